//! The DICOM JSON model (PS3.18 F.2): data sets as `application/dicom+json`.
//! (skeleton: filled by issue 12)
