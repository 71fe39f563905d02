package echeck

// DecodeRecordedEPOPrivate is the private part's decoder as the bank's
// records are read (SignedEPO.OpenRecordedPrivate, without the opening),
// for FuzzDecodeRecordedEPOPrivate.
func DecodeRecordedEPOPrivate(b []byte) (*EPOPrivate, error) { return decodeEPOPrivate(b, true) }
