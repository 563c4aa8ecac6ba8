"""The live namespace graph (model.py) and join sessions (joins.py)."""
