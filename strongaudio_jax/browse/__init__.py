"""`strongaudio browse`: a local web page to search, read and listen to schema-v1 shards.

catalog.py holds what is searched (one row of metadata per record, read once through the
sidecar index); media.py decodes one clip on request (WAV, log-mel PNG); server.py is the Flask
app and its JSON API; static/ is the page (plain HTML/JS/CSS, nothing fetched from elsewhere).
See docs/browse.md.
"""
