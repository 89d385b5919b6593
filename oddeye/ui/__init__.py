"""Review: the store of what heads found and what people decided (store.py) and the Streamlit dashboard (app.py)."""
