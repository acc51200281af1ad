"""The web page for seeing and naming people (Starlette + Jinja2, served by uvicorn)."""
