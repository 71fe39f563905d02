package merchant

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// CatalogueFile is the till's product list inside a catalogue directory.
// The product files lie beside it (or below it):
//
//	{
//	  "products": [
//	    {"id": "song-1", "file": "song-1.ogg", "price": "EUR:1.00", "description": "A song"}
//	  ]
//	}
const CatalogueFile = "catalogue.json"

// Bounds on a catalogue.
const (
	// MaxCatalogueFileLen bounds catalogue.json.
	MaxCatalogueFileLen = 1 << 20
	// MaxProducts bounds the products of one catalogue.
	MaxProducts = 10000
	// MaxDescriptionLen bounds a product description.
	MaxDescriptionLen = 1024
	// MaxProductSize bounds one product file. The encrypted goods travel in
	// one gRPC message, which blindbank's transports (and gRPC's default)
	// cap at 4 MiB, so a product must leave room for the envelope; this is
	// well under echeck.MaxGoodsLen.
	MaxProductSize = 3 << 20
)

// ErrCatalogue wraps every problem found loading a catalogue.
var ErrCatalogue = errors.New("merchant: bad catalogue")

// Product is one item of the till's catalogue: a file sold at a price.
type Product struct {
	ID          string
	Description string
	Price       ecash.Amount
	Path        string // absolute path of the file
	Size        int64
	Hash        [32]byte // SHA-256 of the file when the catalogue was loaded
}

// Catalogue is a loaded, validated product list. It is read-only once
// loaded and safe for concurrent use.
type Catalogue struct {
	Dir      string
	products map[string]*Product
	order    []string // ids in file order
}

// catalogueJSON is the file's format; unknown fields are refused, so a typo
// ("prise") is an error rather than a free product.
type catalogueJSON struct {
	Products []struct {
		ID          string `json:"id"`
		File        string `json:"file"`
		Price       string `json:"price"`
		Description string `json:"description"`
	} `json:"products"`
}

// LoadCatalogue reads DIR/catalogue.json and checks every product: a
// non-empty id of at most echeck.MaxProductIDLen bytes of letters, digits
// and ".-_:" (unique), a file that is a regular file inside DIR of at most
// MaxProductSize bytes, a positive price "CUR:UNITS.CENTS", and a
// description of at most MaxDescriptionLen bytes of UTF-8. The files are
// hashed, so a file changed after loading is noticed before it is sold.
// Errors wrap ErrCatalogue and name the product and field at fault.
func LoadCatalogue(dir string) (*Catalogue, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(abs, CatalogueFile)
	raw, err := readBounded(path, MaxCatalogueFileLen)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCatalogue, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var cj catalogueJSON
	if err := dec.Decode(&cj); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCatalogue, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: trailing data after the catalogue", ErrCatalogue, path)
	}
	if len(cj.Products) > MaxProducts {
		return nil, fmt.Errorf("%w: %s: %d products; at most %d", ErrCatalogue, path, len(cj.Products), MaxProducts)
	}
	c := &Catalogue{Dir: abs, products: make(map[string]*Product, len(cj.Products))}
	for i, pj := range cj.Products {
		bad := func(format string, args ...any) error {
			name := fmt.Sprintf("product %d", i+1)
			if pj.ID != "" {
				name = fmt.Sprintf("product %d (%q)", i+1, pj.ID)
			}
			return fmt.Errorf("%w: %s: %s: %s", ErrCatalogue, path, name, fmt.Sprintf(format, args...))
		}
		if err := checkProductID(pj.ID); err != nil {
			return nil, bad("%v", err)
		}
		if c.products[pj.ID] != nil {
			return nil, bad("id used twice")
		}
		if len(pj.Description) > MaxDescriptionLen || !utf8.ValidString(pj.Description) {
			return nil, bad("description must be at most %d bytes of UTF-8", MaxDescriptionLen)
		}
		price, err := ecash.ParseAmount(pj.Price)
		if err != nil || price.IsZero() {
			return nil, bad("price %q: want a positive CURRENCY:UNITS.CENTS, e.g. EUR:1.00", pj.Price)
		}
		file, err := productPath(abs, pj.File)
		if err != nil {
			return nil, bad("%v", err)
		}
		data, err := readBounded(file, MaxProductSize)
		if err != nil {
			return nil, bad("%v", err)
		}
		c.products[pj.ID] = &Product{
			ID: pj.ID, Description: pj.Description, Price: price, Path: file,
			Size: int64(len(data)), Hash: sha256.Sum256(data),
		}
		c.order = append(c.order, pj.ID)
	}
	return c, nil
}

// checkProductID allows ids a user can type and a file system can hold.
func checkProductID(id string) error {
	if id == "" {
		return errors.New("empty id")
	}
	if len(id) > echeck.MaxProductIDLen {
		return fmt.Errorf("id of %d bytes; at most %d", len(id), echeck.MaxProductIDLen)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_:", r)
		if !ok {
			return errors.New("id may hold only letters, digits, dots, dashes, underscores and colons")
		}
	}
	return nil
}

// productPath resolves a product's file name inside dir, refusing absolute
// paths and paths that leave dir (also through symbolic links).
func productPath(dir, name string) (string, error) {
	if name == "" {
		return "", errors.New("no file")
	}
	if filepath.IsAbs(name) || !filepath.IsLocal(name) {
		return "", fmt.Errorf("file %q must be a relative path inside the catalogue directory", name)
	}
	p := filepath.Join(dir, name)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("file %q: %w", name, err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(realDir, real); err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("file %q leads outside the catalogue directory", name)
	}
	return p, nil
}

// readBounded reads a regular file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is %d bytes; at most %d", path, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	return b, nil
}

// Product returns a product by id.
func (c *Catalogue) Product(id string) (*Product, bool) {
	if c == nil {
		return nil, false
	}
	p, ok := c.products[id]
	return p, ok
}

// Products lists the products in catalogue order.
func (c *Catalogue) Products() []*Product {
	if c == nil {
		return nil
	}
	out := make([]*Product, len(c.order))
	for i, id := range c.order {
		out[i] = c.products[id]
	}
	return out
}

// Currencies lists the currencies the catalogue's prices use, sorted.
func (c *Catalogue) Currencies() []string {
	seen := map[string]bool{}
	for _, p := range c.Products() {
		seen[p.Price.Currency] = true
	}
	var out []string
	for cur := range seen {
		out = append(out, cur)
	}
	sort.Strings(out)
	return out
}

// ErrGoodsChanged: a product file no longer matches what was loaded.
var ErrGoodsChanged = errors.New("merchant: product file changed since the catalogue was loaded; restart the merchant to reload it")

// goods reads a product's file and checks it is the one loaded.
func (p *Product) goods() ([]byte, error) {
	b, err := readBounded(p.Path, MaxProductSize)
	if err != nil {
		return nil, fmt.Errorf("merchant: product %s: %w", p.ID, err)
	}
	if sha256.Sum256(b) != p.Hash {
		return nil, fmt.Errorf("%w (%s)", ErrGoodsChanged, p.ID)
	}
	return b, nil
}
