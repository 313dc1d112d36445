"""Definitions shared by every stage: the config, the label-vector layout, the AFLW-21 scheme and
the face-record type that every dataset reader returns."""
