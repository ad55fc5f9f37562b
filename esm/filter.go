package esm

// FilterSource names a mapping's source the way package filter does, for
// the per-source decoding and create-time checks of FilterCriteria.
func (s Source) FilterSource() string {
	switch s {
	case SourceMSK, SourceKafka:
		return "kafka"
	case SourceDocumentDB:
		return "docdb"
	}
	return string(s)
}
