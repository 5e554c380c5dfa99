"""The News view inside the Airflow UI (see app.py); news_view_plugin.py registers it."""
