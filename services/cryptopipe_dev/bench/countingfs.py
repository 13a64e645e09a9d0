"""A pyarrow filesystem that forwards to another and records every request it makes: which paths a
reader lists, opens and stats. Tests use it to show what a query touches; the lake benchmark counts
requests with it. Counting is per call of the filesystem API (a LIST of many pages is one call)."""

from __future__ import annotations

import threading
from typing import Any

from pyarrow import fs


class CountingHandler(fs.FileSystemHandler):
    def __init__(self, inner: fs.FileSystem) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []  # (operation, path)
        self._lock = threading.Lock()

    def _note(self, op: str, path: str) -> None:
        with self._lock:
            self.calls.append((op, path))

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def paths(self, *ops: str) -> list[str]:
        return [p for o, p in self.calls if not ops or o in ops]

    def count(self, *ops: str) -> int:
        return len(self.paths(*ops))

    # --- FileSystemHandler
    def __eq__(self, other: Any) -> bool:
        return isinstance(other, CountingHandler) and other.inner.equals(self.inner)

    def __ne__(self, other: Any) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return id(self)

    def get_type_name(self) -> str:
        return "counting+" + self.inner.type_name

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[fs.FileInfo]:
        for path in paths:
            self._note("stat", path)
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector: fs.FileSelector) -> list[fs.FileInfo]:
        self._note("list" if not selector.recursive else "list_recursive", selector.base_dir)
        return self.inner.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._note("mkdir", path)
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._note("delete_dir", path)
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._note("delete_dir", path)
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise NotImplementedError("not through the counting filesystem")

    def delete_file(self, path: str) -> None:
        self._note("delete", path)
        self.inner.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._note("move", src)
        self.inner.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._note("copy", src)
        self.inner.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        self._note("get", path)
        return self.inner.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        self._note("get", path)
        return self.inner.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        self._note("put", path)
        return self.inner.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        raise NotImplementedError("S3 has no append")


def counting(inner: fs.FileSystem) -> tuple[fs.PyFileSystem, CountingHandler]:
    handler = CountingHandler(inner)
    return fs.PyFileSystem(handler), handler
