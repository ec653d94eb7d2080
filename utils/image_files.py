"""The image files of a zip archive or a folder: their names, and a way to read their bytes.

Names follow the course: inside a zip, the file name without its folders
(``train2014/COCO_train2014_000000000009.jpg`` -> ``COCO_train2014_000000000009.jpg``),
which is how the COCO caption files name images; inside a folder, the path relative to it.
"""

import os
import zipfile

from capstone.errors import CapstoneError

# macOS zips carry resource-fork twins ("__MACOSX/._photo.jpg") that are not images.
_MACOS_METADATA_FOLDER = "__MACOSX/"
# A file larger than this is refused before it is read (photos are a few MB; a zip entry can
# inflate to gigabytes from a few kilobytes).
MAX_IMAGE_BYTES = 64 * 2 ** 20


class ImageFile:
    """One image file: ``name`` as returned to the caller, ``location`` where to read it."""

    def __init__(self, name, location):
        self.name = name            # e.g. "COCO_train2014_000000000009.jpg"
        self.location = location    # zip member name, or the file's full path

    def __repr__(self):
        return f"ImageFile({self.name!r}, {self.location!r})"


class ImageFiles:
    """The files of ``zip_or_folder`` whose names end with one of ``extensions``.

    zip_or_folder: path of a .zip archive or of a folder (searched recursively).
    extensions:    e.g. (".jpg",); matched case-insensitively, so "A.JPG" counts.
    After construction, ``files`` is a list of ImageFile sorted by name.
    Raises CapstoneError when the path does not exist, is neither a zip nor a folder,
    or two zip members have the same file name in different folders.
    """

    def __init__(self, zip_or_folder, extensions=(".jpg",)):
        self.path = os.fspath(zip_or_folder)
        self.extensions = _normalized_extensions(extensions)
        if os.path.isdir(self.path):
            self.is_zip = False
            self.files = self._list_folder()
        elif os.path.isfile(self.path):
            if not zipfile.is_zipfile(self.path):
                raise CapstoneError(f"{self.path}: expected a zip archive or a folder of images")
            self.is_zip = True
            self.files = self._list_zip()
        else:
            raise CapstoneError(f"{self.path}: no such zip archive or folder")

    def _is_image_name(self, name):
        return name.lower().endswith(self.extensions)

    def _list_folder(self):
        files = []
        for folder, subfolders, file_names in os.walk(self.path):
            subfolders.sort()
            for file_name in file_names:
                if self._is_image_name(file_name):
                    full_path = os.path.join(folder, file_name)
                    name = os.path.relpath(full_path, self.path).replace(os.sep, "/")
                    files.append(ImageFile(name, full_path))
        return sorted(files, key=lambda image_file: image_file.name)

    def _list_zip(self):
        try:
            with zipfile.ZipFile(self.path) as archive:
                members = [info.filename for info in archive.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError) as error:
            raise CapstoneError(f"{self.path}: unreadable zip archive ({error})") from None
        files = {}
        for member in members:
            if member.startswith(_MACOS_METADATA_FOLDER) or not self._is_image_name(member):
                continue
            name = member.rsplit("/", 1)[-1]
            if name in files:
                raise CapstoneError(
                    f"{self.path}: two images are named {name!r} "
                    f"({files[name].location} and {member}); file names must be unique"
                )
            files[name] = ImageFile(name, member)
        return [files[name] for name in sorted(files)]

    def open_reader(self, max_bytes=MAX_IMAGE_BYTES):
        """A reader with ``read(image_file) -> bytes`` and ``close()``; one per thread,
        because each holds its own handle on the zip archive. ``read`` raises CapstoneError
        for a file over ``max_bytes`` without reading it."""
        return _ZipReader(self.path, max_bytes) if self.is_zip else _FolderReader(max_bytes)


def _too_large(label, size, max_bytes):
    return CapstoneError(f"{label}: {size:,} bytes, more than the limit of {max_bytes:,} bytes per image")


class _ZipReader:
    def __init__(self, zip_path, max_bytes):
        self._archive = zipfile.ZipFile(zip_path)
        self._max_bytes = max_bytes

    def read(self, image_file):
        info = self._archive.getinfo(image_file.location)
        label = f"{image_file.location}"
        if max(info.file_size, info.compress_size) > self._max_bytes:  # the header's sizes
            raise _too_large(label, max(info.file_size, info.compress_size), self._max_bytes)
        with self._archive.open(info) as f:  # stops at the header's size even if the data goes on
            data = f.read(self._max_bytes + 1)
        if len(data) > self._max_bytes:
            raise _too_large(label, len(data), self._max_bytes)
        return data

    def close(self):
        self._archive.close()


class _FolderReader:
    def __init__(self, max_bytes):
        self._max_bytes = max_bytes

    def read(self, image_file):
        with open(image_file.location, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > self._max_bytes:
                raise _too_large(image_file.name, size, self._max_bytes)
            data = f.read(self._max_bytes + 1)  # a file that grows while we read is cut off here
        if len(data) > self._max_bytes:
            raise _too_large(image_file.name, len(data), self._max_bytes)
        return data

    def close(self):
        pass


def _normalized_extensions(extensions):
    """(".jpg", ".png") in lower case with a leading dot; accepts "jpg" or a single string."""
    if isinstance(extensions, str):
        extensions = (extensions,)
    normalized = tuple(
        (ext if ext.startswith(".") else "." + ext).lower() for ext in extensions
    )
    if not normalized:
        raise CapstoneError("extensions: expected at least one file extension, e.g. ('.jpg',)")
    return normalized
