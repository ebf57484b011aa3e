"""The shipped screens: the deployment policy, one short assertion per rule (run: pytest --pyargs quantscreen.screens)."""
