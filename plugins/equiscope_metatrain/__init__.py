"""equiscope as a metatrain architecture: ``architecture: name: experimental.equiscope``.

metatrain imports architectures only as ``metatrain.<name>`` or
``metatrain.experimental.<name>`` and has no plugin entry points, so
:mod:`equiscope_metatrain._register` (run at interpreter start by the
``equiscope_metatrain.pth`` file that ``pip install equiscope`` puts in site-packages)
aliases ``metatrain.experimental.equiscope`` to :mod:`equiscope_metatrain.architecture`.
This package's ``__init__`` stays free of imports so that start-up costs nothing.
"""
