// Package vectorstoretest is the contract test kit for vectorstore.Store
// implementations: every implementation runs Run in its own tests.
//
// It is test support, imported only from _test.go files.
package vectorstoretest
