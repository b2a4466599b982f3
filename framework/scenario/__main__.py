"""`python -m framework.scenario`: print the scenario reference (README's generated block)."""

from framework.scenario.reference import reference_markdown

print(reference_markdown(), end="")
