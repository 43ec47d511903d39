"""``gatekeeper report``: a rollout's decisions as one self-contained HTML page (timeline.py: what is shown;
page.py: the plotly charts and tables; sources.py: decisions from a file or the decisions topic; cli.py)."""
