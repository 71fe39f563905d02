package bankdcmd

import (
	"strings"
	"testing"
)

// TestRedactStorePasswords: "bankd config check" prints the store through
// redactStore, which hid a password only in a URL's user info. libpq and
// pgx take one as well as a URL's query parameter and in the
// keyword/value form the config's own doc names ("host=… dbname=…"):
// those were printed in clear. The rest of the string stays readable; a
// string that does not parse is not shown.
func TestRedactStorePasswords(t *testing.T) {
	for _, c := range []struct{ in, keep string }{
		{"postgres://bank:s3cret@db.internal/blindbank", "postgres://bank:xxxxx@db.internal/blindbank"},
		{"postgres://bank@db.internal/blindbank?sslmode=verify-full&password=s3cret", "sslmode=verify-full"},
		{"postgresql://bank@db.internal/blindbank?PASSWORD=s3cret&sslpassword=s3cret", "db.internal/blindbank"},
		{"host=db.internal user=bank password=s3cret dbname=blindbank", "host=db.internal user=bank password=xxxxx dbname=blindbank"},
		{"host=db.internal password = 's3cret and \\' more' dbname=blindbank", "host=db.internal password = xxxxx dbname=blindbank"},
		{"password=s3cret\\ more sslpassword='s3cret'", "password=xxxxx sslpassword=xxxxx"},
		{"host=db.internal password='s3cret", "not shown"},
		{"postgres://bank:s3cret@db.internal:port/x", "not shown"},
		{"host=db.internal dbname=blindbank", "host=db.internal dbname=blindbank"},
		// A URL not quite at the start is no keyword/value string either
		// (pgx takes it as one keyword up to its first '=').
		{" postgres://bank:s3cret@db.internal/blindbank?sslmode=verify-full", "not shown"},
		{"Postgres://bank:s3cret@db.internal/blindbank?sslmode=verify-full", "not shown"},
	} {
		got := redactStore(c.in)
		if strings.Contains(got, "s3cret") || strings.Contains(got, "more") {
			t.Errorf("redactStore(%q) = %q: the password is shown", c.in, got)
		}
		if !strings.Contains(got, c.keep) {
			t.Errorf("redactStore(%q) = %q; want it to show %q", c.in, got, c.keep)
		}
	}
	if got := redactStore(""); got != "" {
		t.Errorf("redactStore(\"\") = %q", got)
	}
}
