"""The board's pages (run by Streamlit from dashboard/app.py, one file per page)."""
