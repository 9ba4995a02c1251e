package vectorstore

// Sparse is a sparse lexical vector: term ids (hashes of terms) in increasing order
// and their weights. Package rag makes them; stores index them.
type Sparse struct {
	Indices []uint32
	Values  []float32
}
