"""Per-person album folders: plan them from people and labels, write them, picture them."""

from daemon.albums.dirs import AlbumError
from daemon.albums.export import ExportError, KnownPhotos, export_zip, zip_target
from daemon.albums.manifest import read_manifest
from daemon.albums.names import entry_name
from daemon.albums.pictures import PicturesReport, write_pictures
from daemon.albums.plan import NO_FACES_FOLDER, AlbumPlan, FaceRef, plan_albums
from daemon.albums.tree import AlbumReport
from daemon.albums.writer import write_albums

__all__ = [
    "NO_FACES_FOLDER",
    "AlbumError",
    "AlbumPlan",
    "AlbumReport",
    "ExportError",
    "FaceRef",
    "KnownPhotos",
    "PicturesReport",
    "entry_name",
    "export_zip",
    "plan_albums",
    "read_manifest",
    "write_albums",
    "write_pictures",
    "zip_target",
]
