"""The headless web view: live annotated video, live predictions, Prometheus metrics.

Modules: `sink` (WebSink, what the pipeline feeds), `server` (the HTTP server and its routes),
`access` (bind address and token), `latest` (the newest-wins mailboxes viewers read),
`page` (the HTML page), `metrics` (Prometheus export of the pipeline's metrics).
"""
