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

    def open_reader(self):
        """A reader with ``read(image_file) -> bytes`` and ``close()``; one per thread,
        because each holds its own handle on the zip archive."""
        return _ZipReader(self.path) if self.is_zip else _FolderReader()


class _ZipReader:
    def __init__(self, zip_path):
        self._archive = zipfile.ZipFile(zip_path)

    def read(self, image_file):
        return self._archive.read(image_file.location)

    def close(self):
        self._archive.close()


class _FolderReader:
    def read(self, image_file):
        with open(image_file.location, "rb") as f:
            return f.read()

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
