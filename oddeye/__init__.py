"""oddeye: find what is out of the ordinary in video, 3D scans, patrol footage and images."""

__version__ = "0.1.0"
