"""Supervisor board (Streamlit). It talks to the server's HTTP API only; arrives with the live server."""
