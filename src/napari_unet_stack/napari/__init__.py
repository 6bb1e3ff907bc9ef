"""napari integration: dock widgets, sample data and writers (the only code importing napari or Qt).

The modules here are imported by napari through the npe2 manifest (``napari.yaml``) when
a contribution is used; importing this package itself imports neither napari nor Qt.
"""
