"""A small Hugging Face Hub on 127.0.0.1 for tests: dataset repositories with a history of commits, served through
the part of the Hub's HTTP API that huggingface_hub (`hf_hub_download`, `HfApi`, `HfFileSystem`) and
`datasets.load_dataset` (streaming or not) use. Point them at it with `LocalHub.patch_endpoint`.

Routes (`{repo}` is `owner/name`, `{rev}` a branch or a commit sha):
- `GET /api/datasets/{repo}[/revision/{rev}]`: the repository's info, with its commit sha and files;
- `GET /api/datasets/{repo}/tree/{rev}[/{folder}]`: a folder's entries (`?recursive=true`: all below it);
- `POST /api/datasets/{repo}/paths-info/{rev}`: the entries of the given paths;
- `HEAD`/`GET /datasets/{repo}/resolve/{rev}/{path}`: a file, with `ETag`, `X-Repo-Commit` and `Content-Length`,
  and byte ranges (`Range`) for streaming.
Anything else is a 404 and is recorded in `LocalHub.unhandled`.
"""

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

# Files the real Hub stores with Git LFS: their ETag is the content's sha256, as huggingface_hub expects for LFS.
LFS_SUFFIXES = (".gz", ".parquet", ".wav", ".arrow")


def _git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]


@dataclass
class Repo:
    commits: list[Commit] = field(default_factory=list)  # oldest first; the last one is `main`

    def at(self, revision: str) -> Commit | None:
        if revision == "main" and self.commits:
            return self.commits[-1]
        return next((commit for commit in self.commits if commit.sha == revision), None)


def _entry(path: str, content: bytes | None) -> dict:
    """A tree / paths-info entry: a file (`content` given) or a folder."""
    if content is None:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
    entry = {"type": "file", "oid": _git_blob_id(content), "size": len(content), "path": path}
    if path.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
    return entry


class LocalHub:
    """Dataset repositories in memory, served on `http://127.0.0.1:<free port>` by a thread (`start` / `stop`)."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []  # "METHOD /path" of every request, to assert when none was made
        self.unhandled: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def commit(self, repo_id: str, files: dict[str, bytes], delete: tuple[str, ...] = ()) -> str:
        """Add a commit to `repo_id` (created if new) that adds or replaces `files` and deletes `delete`; its sha."""
        repo = self.repos.setdefault(repo_id, Repo())
        parent = repo.commits[-1] if repo.commits else Commit("", {})
        tree = {path: content for path, content in {**parent.files, **files}.items() if path not in delete}
        digest = hashlib.sha1(parent.sha.encode())
        for path, content in sorted(tree.items()):
            digest.update(path.encode() + b"\0" + hashlib.sha1(content).digest())
        repo.commits.append(Commit(digest.hexdigest(), tree))
        return repo.commits[-1].sha

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalHub":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def patch_endpoint(self, monkeypatch) -> None:
        """Point huggingface_hub and datasets at this Hub. Both read `HF_ENDPOINT` once, at import: the environment
        variable is set for subprocesses, the module constants for this process."""
        import datasets
        from huggingface_hub import HfFileSystem, constants

        monkeypatch.setenv("HF_ENDPOINT", self.url)
        monkeypatch.setattr(constants, "ENDPOINT", self.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", self.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", self.url)
        monkeypatch.setattr(
            datasets.config, "HUB_DATASETS_URL", self.url + "/datasets/{repo_id}/resolve/{revision}/{path}"
        )
        # fsspec keeps one HfFileSystem per set of arguments, with its listings: none may outlive this Hub
        HfFileSystem.clear_instance_cache()


def _handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's session expects

        def log_message(self, *args):  # quiet: requests are recorded in `hub.requests`
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, error_code: str = "") -> None:
            self.send_response(status)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
            if error_code:
                headers["X-Error-Code"] = error_code
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, value) -> None:
            self._send(200, json.dumps(value).encode())

        def _not_found(self, error_code: str, message: str) -> None:
            self._send(404, json.dumps({"error": message}).encode(), error_code=error_code)

        def _commit(self, repo_id: str, revision: str) -> Commit | None:
            if repo_id not in hub.repos:
                self._not_found("RepoNotFound", f"Repository {repo_id} not found")
                return None
            commit = hub.repos[repo_id].at(unquote(revision))
            if commit is None:
                self._not_found("RevisionNotFound", f"Invalid rev id: {revision}")
            return commit

        def _route(self) -> None:
            url = urlsplit(self.path)
            hub.requests.append(f"{self.command} {url.path}")
            path, query = unquote(url.path), parse_qs(url.query)
            repo = r"/(?P<repo>[^/]+/[^/]+)"
            if match := re.fullmatch(rf"/api/datasets{repo}(?:/revision/(?P<rev>[^/]+))?", path):
                if commit := self._commit(match["repo"], match["rev"] or "main"):
                    self._info(match["repo"], commit, "blobs" in query)
            elif match := re.fullmatch(rf"/api/datasets{repo}/tree/(?P<rev>[^/]+)(?:/(?P<folder>.*))?", path):
                if commit := self._commit(match["repo"], match["rev"]):
                    recursive = query.get("recursive", ["false"])[0].lower() == "true"
                    self._tree(commit, (match["folder"] or "").strip("/"), recursive)
            elif match := re.fullmatch(rf"/api/datasets{repo}/paths-info/(?P<rev>[^/]+)", path):
                if commit := self._commit(match["repo"], match["rev"]):
                    length = int(self.headers.get("Content-Length", 0))
                    paths = parse_qs(self.rfile.read(length).decode()).get("paths", [])
                    folders = _folders(commit)
                    self._json([_entry(p, commit.files.get(p)) for p in paths if p in commit.files or p in folders])
            elif match := re.fullmatch(rf"/datasets{repo}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path):
                if commit := self._commit(match["repo"], match["rev"]):
                    self._file(commit, match["file"])
            else:
                if path != "/api/agent-harnesses":  # huggingface_hub's daily registry fetch: a 404 is tolerated
                    hub.unhandled.append(f"{self.command} {self.path}")
                self._not_found("", f"{self.command} {self.path} is not served by the local Hub")

        def _info(self, repo_id: str, commit: Commit, blobs: bool) -> None:
            siblings = [
                {"rfilename": p, **({"size": len(c), "blobId": _git_blob_id(c)} if blobs else {})}
                for p, c in sorted(commit.files.items())
            ]
            self._json(
                {
                    "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                    "id": repo_id,
                    "author": repo_id.split("/")[0],
                    "sha": commit.sha,
                    "lastModified": "2026-01-01T00:00:00.000Z",
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "private": False,
                    "gated": False,
                    "disabled": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                    "siblings": siblings,
                }
            )

        def _tree(self, commit: Commit, folder: str, recursive: bool) -> None:
            prefix = f"{folder}/" if folder else ""
            entries = {}
            for path in [*commit.files, *_folders(commit)]:
                if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :]):
                    entries[path] = _entry(path, commit.files.get(path))
            if folder and not entries and folder not in commit.files:
                return self._not_found("EntryNotFound", f"{folder} does not exist")
            self._json([entries[path] for path in sorted(entries)])

        def _file(self, commit: Commit, name: str) -> None:
            if name not in commit.files:
                return self._not_found("EntryNotFound", f"{name} does not exist at {commit.sha}")
            content = commit.files[name]
            entry = _entry(name, content)
            etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
            headers = {
                "Content-Type": "application/octet-stream",
                "ETag": f'"{etag}"',
                "X-Repo-Commit": commit.sha,
                "Accept-Ranges": "bytes",
            }
            status = 200
            if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(content) - 1, len(content) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                content, status = content[start : end + 1], 206
            self._send(status, content, headers)

        do_GET = do_HEAD = do_POST = _route

    return Handler


def _folders(commit: Commit) -> set[str]:
    return {str(parent) for path in commit.files for parent in PurePosixPath(path).parents if str(parent) != "."}
