"""`charrnn serve`: a local web page and JSON API over trained runs (Starlette on uvicorn, `charrnn[serve]`)."""
