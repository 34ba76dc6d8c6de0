"""A small Hugging Face Hub on 127.0.0.1, for tests that take huggingface_hub's real download and upload paths.

Serves the few endpoints huggingface_hub calls, in the Hub's own wire format:
  GET  /api/models/{repo}[/revision/{rev}]      repo info (the commit sha)
  GET  /api/models/{repo}/tree/{rev}            the file list
  HEAD/GET /{repo}/resolve/{rev}/{path}         a file, with the X-Repo-Commit / ETag headers the client reads
  POST /api/repos/create, /api/validate-yaml, /api/models/{repo}/preupload/{rev}, .../commit/{rev}   an upload
Gated and missing repos answer as the Hub does (403 + X-Error-Code: GatedRepo, 404 + RepoNotFound). Every request
is logged, so a test can check what was fetched. Point a process at it with HF_ENDPOINT=server.url.
"""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

SHA = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.gated: set[str] = set()
        self.log: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._serve(self, head=True)

            def do_GET(self):
                hub._serve(self, head=False)

            def do_POST(self):
                hub._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def add_folder(self, repo_id: str, folder: Path, gated: bool = False) -> None:
        self.repos[repo_id] = {str(p.relative_to(folder)): p.read_bytes() for p in Path(folder).rglob("*")
                               if p.is_file()}
        if gated:
            self.gated.add(repo_id)

    def fetched(self, repo_id: str) -> set[str]:
        """Paths of repo_id whose content was sent (GET of resolve/)."""
        prefix = f"/{repo_id}/resolve/"
        return {p[len(prefix):].split("/", 1)[1] for m, p in self.log if m == "GET" and p.startswith(prefix)}

    # --- handlers ---------------------------------------------------------------------------------------------------
    def _split(self, path: str) -> tuple[str | None, str]:
        """-> (repo_id, rest) for a path that names a known or unknown repo."""
        parts = path.strip("/").split("/")
        return ("/".join(parts[:2]), "/".join(parts[2:])) if len(parts) >= 2 else (None, "")

    def _error(self, h, repo_id: str) -> bool:
        if repo_id in self.gated:
            _send(h, 403, b'{"error":"gated"}', {"X-Error-Code": "GatedRepo",
                                                   "X-Error-Message": f"Access to model {repo_id} is restricted."})
            return True
        if repo_id not in self.repos:
            _send(h, 404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound",
                                                                  "X-Error-Message": "Repository not found"})
            return True
        return False

    def _serve(self, h, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.log.append(("HEAD" if head else "GET", path))
        if path.startswith("/api/models/"):
            repo_id, rest = self._split(path[len("/api/models/"):])
            if self._error(h, repo_id):
                return
            files = self.repos[repo_id]
            if rest.startswith("tree/"):
                body = [{"type": "file", "path": p, "size": len(b), "oid": _oid(b)} for p, b in sorted(files.items())]
            else:
                body = {"id": repo_id, "modelId": repo_id, "sha": SHA, "private": False, "gated": False,
                        "siblings": [{"rfilename": p} for p in sorted(files)]}
            _send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
            return
        repo_id, rest = self._split(path)
        if repo_id is None or not rest.startswith("resolve/"):
            _send(h, 404, b"{}", {}, head)
            return
        if self._error(h, repo_id):
            return
        fname = rest.split("/", 2)[2]
        data = self.repos[repo_id].get(fname)
        if data is None:
            _send(h, 404, b'{"error":"Entry not found"}', {"X-Error-Code": "EntryNotFound"}, head)
            return
        _send(h, 200, data, {"X-Repo-Commit": SHA, "ETag": f'"{_oid(data)}"',
                             "Content-Type": "application/octet-stream"}, head)

    def _post(self, h) -> None:
        path = unquote(urlparse(h.path).path)
        self.log.append(("POST", path))
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if path == "/api/validate-yaml":  # the model card's metadata block, checked before the commit
            _send(h, 200, b"{}", {"Content-Type": "application/json"})
            return
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            self.repos.setdefault(repo_id, {})
            _send(h, 200, json.dumps({"url": f"{self.url}/{repo_id}"}).encode(), {"Content-Type": "application/json"})
            return
        repo_id, rest = self._split(path[len("/api/models/"):])
        if repo_id not in self.repos:
            self._error(h, repo_id)
            return
        if rest.startswith("preupload/"):
            files = json.loads(body)["files"]
            out = {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            _send(h, 200, json.dumps(out).encode(), {"Content-Type": "application/json"})
        elif rest.startswith("commit/"):
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.repos[repo_id][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            _send(h, 200, json.dumps({"commitUrl": f"{self.url}/{repo_id}/commit/{SHA}", "commitOid": SHA}).encode(),
                  {"Content-Type": "application/json"})
        else:
            _send(h, 404, b"{}", {})


def _oid(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _send(h, code: int, body: bytes, headers: dict, head: bool = False) -> None:
    h.send_response(code)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if not head:
        h.wfile.write(body)
