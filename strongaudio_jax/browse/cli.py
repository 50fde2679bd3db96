"""`strongaudio browse SHARDS... [--compare SHARDS...] [--port 8080] [--host 127.0.0.1]`."""

from __future__ import annotations

import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("browse", help="a local web page to search, read and listen to shards "
                       "(captions, tags, spectrograms; docs/browse.md)")
    p.add_argument("files", nargs="+", help="shard paths, folders or glob patterns (local or "
                   "gs://...); a <shard>.idx sidecar (strongaudio index) spares a scan")
    p.add_argument("--compare", nargs="+", action="append", default=[], metavar="SHARDS",
                   help="another corpus holding the same clip ids (e.g. re-captioned), shown "
                        "side by side; repeatable")
    p.add_argument("--scores", nargs="+", default=[], metavar="FILE",
                   help="curation scores: .jsonl or .csv files with an 'id' and numeric "
                        "columns, each column becomes a filter")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this "
                   "machine only; 0.0.0.0 shows the shards to the whole network)")
    p.add_argument("--frontend", default="mel_db", help="log-mel preset of the spectrograms")
    p.add_argument("--no-cache", action="store_true", help="read every record at start even "
                   "where $STRONGAUDIO_CACHE/browse holds the shard's metadata")
    p.set_defaults(func=main)


def _name(files: list[str], taken: set[str]) -> str:
    """A corpus's name: the folder of its first shard (made unique)."""
    base = os.path.basename(os.path.dirname(files[0].rstrip("/"))) or "corpus"
    name, n = base, 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    taken.add(name)
    return name


def main(args) -> int:
    try:
        from strongaudio_jax.browse import server
    except ImportError as e:
        print(f"strongaudio browse: error: {e}; install the browser's dependencies with "
              "pip install 'strongaudio_jax[browse]'", file=sys.stderr)
        return 2
    from strongaudio_jax.browse import catalog
    from strongaudio_jax.data import pipeline

    from strongaudio_jax.frontend import logmel

    try:
        logmel.get_preset(args.frontend)  # an unknown preset fails now, not on the first clip
    except KeyError as e:
        print(f"strongaudio browse: error: {e.args[0]}", file=sys.stderr)
        return 2
    catalogs, taken = [], set()
    try:
        for files in [args.files, *args.compare]:
            paths = pipeline.expand_paths(files)
            catalogs.append(catalog.Catalog(_name(paths, taken), paths, args.scores,
                                            progress=True, cache=not args.no_cache))
    except catalog.ScoresFileError as e:
        print(f"strongaudio browse: error: {e}", file=sys.stderr)
        return 2
    for c in catalogs:
        info = c.info()
        print(f"{c.name}: {info['clips']} clips in {info['files']} file(s), "
              f"{info['distinct_tags']} tags, {info['damaged']} damaged record(s)"
              + (f", metadata of {c.cached_files} file(s) from the cache" if c.cached_files else "")
              + (f", {info['unmatched_scores']} scored id(s) not in it"
                 if info["unmatched_scores"] else ""))
        for problem in info["problems"][:5]:
            print(f"  {problem}")
    httpd = server.serve(catalogs, args.host, args.port, args.frontend)
    print(f"serving on http://{args.host}:{httpd.port}/ (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
