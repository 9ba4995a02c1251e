package store

import "github.com/ragway/ragway/gateway/text"

// CheckText returns a *FieldError naming field when s cannot be stored in a Postgres
// text column (text.Check: a NUL character, which Postgres text refuses, or bytes that
// are not UTF-8). Every text a client gives that this package stores is checked before
// any write, so such input is the client's 400, never Postgres's error.
func CheckText(field, s string) error {
	if why := text.Check(s); why != "" {
		return &FieldError{Field: field, Reason: why}
	}
	return nil
}

// checkTexts checks fields and values pairwise ([CheckText]): the first error.
func checkTexts(fieldsAndValues ...string) error {
	for i := 0; i+1 < len(fieldsAndValues); i += 2 {
		if err := CheckText(fieldsAndValues[i], fieldsAndValues[i+1]); err != nil {
			return err
		}
	}
	return nil
}
