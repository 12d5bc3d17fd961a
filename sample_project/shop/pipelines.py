"""The shop's pipelines; djap finds this module at startup, like jobs.py."""

from djap import Join, Pipeline

from .jobs import ListAlbumPhotos, PublishAlbum, ResizeImage


class PublishAlbumPipeline(Pipeline):
    """List an album's photos, resize each one (a branch per photo), then publish once."""

    jobs = [ListAlbumPhotos, ResizeImage, Join(PublishAlbum)]
