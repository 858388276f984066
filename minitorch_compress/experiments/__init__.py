"""The labs' experiments as functions; `labs/*.py` only parse arguments and call these."""
