"""`amlwh report`: one self-contained HTML file with charts of the views.

build.py runs the SQL of sql/report over a read-only query connection (the data of each
chart), charts.py turns each result into a plotly figure, html.py puts the figures, their
tables and plotly.js itself into one file that opens offline. docs/report.md says what
each chart shows.
"""
