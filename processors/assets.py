"""Assets: the only files processors read, named relative to the configured assets directory.

A processor parameter that names a file (the watermark's image) is an **asset name**, never a
path or a URL: ``logo.png`` or ``brands/logo.png``, a regular file inside
``processing.assets_dir``. Refused, before anything touches the disk: a scheme or any ``:``
(FFmpeg reads ``http:``, ``file:``, ``concat:``, ``subfile:``, ``pipe:``, ``data:`` ... URLs,
which would let whoever may change a parameter make the server fetch them), an absolute
path, ``.`` and ``..`` components, empty components, backslashes and control characters. A
name is then resolved with its symlinks and must still be inside the (equally resolved)
directory: a symlink pointing elsewhere in the directory works, one leading out does not.
Only regular files are read (a FIFO or a device could block a thread for ever), at most
:data:`MAX_BYTES` of them.

Whatever is refused for being missing, outside the directory or behind a symlink out of it
gets the same message, so parameter errors never tell whether some file exists elsewhere.

:meth:`Assets.read` blocks (it reads a file): call it off the event loop. A registry builds
processors on the loop with :meth:`Assets.deferred` assets, which tell them to check names
only and read in their worker thread instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_BYTES = 8 * 1024 * 1024
"""The largest asset file read; a watermark PNG is kilobytes."""
MAX_NAME_CHARS = 1024

_HINT = "an asset name is a relative file name inside processing.assets_dir"


class AssetError(ValueError):
    """An asset name is refused or its file cannot be read; the message is safe to return."""


class Assets:
    """The assets directory (``None``: processors read no files at all)."""

    def __init__(
        self, root: str | os.PathLike[str] | None, *, max_bytes: int = MAX_BYTES, eager: bool = True
    ) -> None:
        self.root = None if root is None else Path(root)
        self.max_bytes = max_bytes
        self.eager = eager
        """False: processors being built must not read files yet (the event loop builds them)."""

    def deferred(self) -> Assets:
        """The same directory, for processors built where no file may be read (the loop)."""
        return Assets(self.root, max_bytes=self.max_bytes, eager=False)

    @staticmethod
    def check_name(name: object) -> str:
        """``name`` if it has the form of an asset name (no file system access); else AssetError."""
        if not isinstance(name, str) or not name:
            raise AssetError(f"{name!r} is not an asset name: {_HINT}")
        if len(name) > MAX_NAME_CHARS:
            raise AssetError(f"an asset name is at most {MAX_NAME_CHARS} characters: {_HINT}")
        shown = name if len(name) <= 80 else name[:77] + "..."
        if ":" in name:
            # Every FFmpeg protocol and URL scheme has one (and so has a Windows drive).
            raise AssetError(f"{shown!r} is not an asset name (no URLs or protocols): {_HINT}")
        if name.startswith("/"):
            raise AssetError(f"{shown!r} is not an asset name (no absolute paths): {_HINT}")
        if "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise AssetError(f"{shown!r} is not an asset name (no backslashes or controls)")
        if any(part in ("", ".", "..") for part in name.split("/")):
            raise AssetError(f"{shown!r} is not an asset name (no '..', '.' or '//'): {_HINT}")
        return name

    def path(self, name: object) -> Path:
        """The real path of the regular file named ``name`` inside the directory (blocking)."""
        checked = self.check_name(name)
        root = self._root()
        # realpath follows every symlink, so the containment check sees where a name leads.
        real = Path(os.path.realpath(root / checked))
        if real == root or root not in real.parents:
            raise self._missing(checked)
        try:
            info = os.stat(real)
        except OSError:
            raise self._missing(checked) from None
        if not stat.S_ISREG(info.st_mode):
            raise AssetError(f"asset {checked!r} is not a regular file")
        if info.st_size > self.max_bytes:
            raise AssetError(f"asset {checked!r} is larger than {self.max_bytes} bytes")
        return real

    def read(self, name: object) -> bytes:
        """The content of the asset ``name`` (blocking: call it off the event loop)."""
        real = self.path(name)
        checked = str(name)
        # O_NOFOLLOW: the resolved path has no symlink left, so one appearing now is a swap;
        # O_NONBLOCK: a file swapped for a FIFO since path() fails fstat below, never blocks.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(real, flags)
        except OSError:
            raise self._missing(checked) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise AssetError(f"asset {checked!r} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as file:
                # One byte more than allowed tells a file that grew after the check.
                data = file.read(self.max_bytes + 1)
        except OSError as error:
            raise AssetError(f"asset {checked!r} cannot be read: {error.strerror}") from None
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:
            raise AssetError(f"asset {checked!r} is larger than {self.max_bytes} bytes")
        return data

    def _root(self) -> Path:
        if self.root is None:
            raise AssetError("processors read no files: processing.assets_dir is not set")
        root = Path(os.path.realpath(self.root))
        if not root.is_dir():
            raise AssetError("the assets directory (processing.assets_dir) does not exist")
        return root

    @staticmethod
    def _missing(name: str) -> AssetError:
        # One message for missing, outside and symlinked-out: nothing about other files leaks.
        return AssetError(f"no asset {name!r} in the assets directory")
