"""Video sources: files, image folders, network streams, cameras, screens, pushed frames.

    open_source(spec, clock=..., timebase=...) -> Source
        FileSource          a video file (or a media URL) at real time, optionally looped
        ImageFolderSource   a folder of images, one per sample interval (or `fps`)
        LiveSource          rtsp/rtmp/http(s)/HLS/srt/udp, webcams, screens, lavfi; reconnects
        PushSource          JPEG bytes pushed by a client

Every source decodes off the event loop and stamps frames in session seconds. Errors are
`SourceError` (`SourceUnavailable` where retrying may help), naming the source and the reason.
"""

from ._source_base import Source, av_errors, redact
from ._source_file import IMAGE_SUFFIXES, FileSource, ImageFolderSource
from ._source_live import LiveSource
from ._source_open import SOURCE_HELP, open_source
from ._source_push import PushSource

__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCE_HELP",
    "FileSource",
    "ImageFolderSource",
    "LiveSource",
    "PushSource",
    "Source",
    "av_errors",
    "open_source",
    "redact",
]
