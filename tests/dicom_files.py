"""DICOM files written with pydicom for the tests."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_dicom(path, pixels, **tags) -> Dataset:
    """A CT file of 16-bit pixels (F×H×W for several frames); `tags` set any attribute."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = tags.pop("syntax", ExplicitVRLittleEndian)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    signed = ds.PixelRepresentation == 1
    if "PixelData" not in tags and tags.get("with_pixels", True):
        ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def grey_bundle(folder):
    """A bundle of the tiny CNN reading one band, that applies each DICOM file's window."""
    from builders import tiny_model

    from scorecam_onnx import Preprocessing, write_bundle

    prep = Preprocessing(mean=(0.5,), std=(0.25,), voi_lut=True)
    return write_bundle(tiny_model(bands=1), folder, "feat", preprocessing=prep)
