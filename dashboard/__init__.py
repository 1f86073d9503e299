"""The supervisor board: a Streamlit app (``dashboard/app.py``, ``callwatch dashboard``) that
talks to one or more callwatch servers only through their HTTP API (``dashboard/client.py``)."""
