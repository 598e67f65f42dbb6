// Command tlog-audit checks a tiled transparency log (c2sp.org/tlog-tiles), such as a published registry
// ledger, with Go's reference code (golang.org/x/mod/sumdb/note and sumdb/tlog) and nothing of the log's:
//
//	tlog-audit [-old CHECKPOINT] [-witness VKEY]... [-witness-threshold N] PREFIX LOG-VKEY
//
// PREFIX is the log's URL prefix (https://host/path) or a directory of its files. It verifies the
// checkpoint's signature, reads every tile through tlog.TileHashReader (which authenticates each tile
// against the signed root), recomputes the root with tlog.TreeHash, checks every entry of every entry
// bundle against its leaf hash, checks c2sp.org/tlog-cosignature cosignatures by the given witnesses,
// and with -old proves that the current tree extends an older checkpoint (tlog.ProveTree, tlog.CheckTree).
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

type witnesses []string

func (w *witnesses) String() string     { return strings.Join(*w, ",") }
func (w *witnesses) Set(v string) error { *w = append(*w, v); return nil }

func main() {
	old := flag.String("old", "", "an older checkpoint file the current tree must extend")
	var keys witnesses
	flag.Var(&keys, "witness", "a witness's cosignature/v1 verifier key (repeatable)")
	threshold := flag.Int("witness-threshold", -1, "how many -witness cosignatures are needed [default: all]")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: tlog-audit [-old CHECKPOINT] [-witness VKEY]... PREFIX LOG-VKEY")
		os.Exit(2)
	}
	if *threshold < 0 {
		*threshold = len(keys)
	}
	if err := audit(flag.Arg(0), flag.Arg(1), *old, keys, *threshold); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

func fetch(prefix, path string) ([]byte, error) {
	if !strings.HasPrefix(prefix, "http://") && !strings.HasPrefix(prefix, "https://") {
		return os.ReadFile(filepath.Join(prefix, filepath.FromSlash(path)))
	}
	resp, err := http.Get(strings.TrimSuffix(prefix, "/") + "/" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// c2spPath is tlog-tiles' path of a tile: Go's sumdb path without the height, "data" named "entries".
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), "tile/"+strconv.Itoa(t.H)+"/")
	return "tile/" + strings.Replace(p, "data/", "entries/", 1)
}

type tileReader struct{ prefix string }

func (r tileReader) Height() int                     { return height }
func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}
func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		d, err := fetch(r.prefix, c2spPath(t))
		if err != nil {
			return nil, err
		}
		if len(d) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(d), t.W*tlog.HashSize)
		}
		data[i] = d
	}
	return data, nil
}

type checkpoint struct {
	origin string
	tree   tlog.Tree
	body   string
}

func open(raw []byte, vkey string) (checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return checkpoint{}, err
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		return checkpoint{}, err
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, errors.New("malformed checkpoint")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return checkpoint{}, errors.New("malformed checkpoint size")
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, err
	}
	return checkpoint{lines[0], tlog.Tree{N: size, Hash: root}, n.Text}, nil
}

// cosigned counts the witnesses (vkeys of type 0x04) whose cosignature/v1 line on the note verifies.
func cosigned(raw []byte, body string, keys []string) (int, error) {
	count := 0
	for _, vkey := range keys {
		f := strings.SplitN(vkey, "+", 3)
		key, err := base64.StdEncoding.DecodeString(f[len(f)-1])
		if len(f) != 3 || err != nil || len(key) != 33 || key[0] != 0x04 {
			return 0, fmt.Errorf("not a cosignature/v1 key: %s", vkey)
		}
		id := sha256.Sum256(append([]byte(f[0]+"\n"), key...))
		for _, line := range strings.Split(string(raw), "\n") {
			name, sig, ok := strings.Cut(strings.TrimPrefix(line, "\u2014 "), " ")
			s, err := base64.StdEncoding.DecodeString(sig)
			if !strings.HasPrefix(line, "\u2014 ") || !ok || name != f[0] || err != nil || len(s) != 76 ||
				!bytes.Equal(s[:4], id[:4]) {
				continue
			}
			t := binary.BigEndian.Uint64(s[4:12])
			msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", t, body)
			if ed25519.Verify(ed25519.PublicKey(key[1:]), []byte(msg), s[12:]) {
				count++
				break
			}
		}
	}
	return count, nil
}

func audit(prefix, vkey, oldPath string, keys []string, threshold int) error {
	raw, err := fetch(prefix, "checkpoint")
	if err != nil {
		return err
	}
	cp, err := open(raw, vkey)
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	witnessed, err := cosigned(raw, cp.body, keys)
	if err != nil || witnessed < threshold {
		return fmt.Errorf("checkpoint: %d of %d witness cosignatures verify, %d needed (%v)", witnessed, len(keys), threshold, err)
	}
	hr := tlog.TileHashReader(cp.tree, tileReader{prefix})
	root, err := tlog.TreeHash(cp.tree.N, hr)
	if err != nil {
		return err
	}
	if root != cp.tree.Hash {
		return fmt.Errorf("the tiles hash to %v, the checkpoint says %v", root, cp.tree.Hash)
	}
	for start := int64(0); start < cp.tree.N; start += 1 << height {
		t := tlog.TileForIndex(height, tlog.StoredHashIndex(0, start))
		t.L, t.W = -1, 1<<height
		if rest := cp.tree.N - start; rest < 1<<height {
			t.W = int(rest)
		}
		data, err := fetch(prefix, c2spPath(t))
		if err != nil {
			return err
		}
		indexes := make([]int64, t.W)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		hashes, err := hr.ReadHashes(indexes)
		if err != nil {
			return err
		}
		for i := 0; i < t.W; i++ {
			if len(data) < 2 || len(data) < 2+int(binary.BigEndian.Uint16(data)) {
				return fmt.Errorf("%s: truncated at entry %d", c2spPath(t), i)
			}
			n := int(binary.BigEndian.Uint16(data))
			if tlog.RecordHash(data[2:2+n]) != hashes[i] {
				return fmt.Errorf("%s: entry %d does not hash to its leaf", c2spPath(t), start+int64(i))
			}
			data = data[2+n:]
		}
		if len(data) != 0 {
			return fmt.Errorf("%s: %d bytes after the last entry", c2spPath(t), len(data))
		}
	}
	if oldPath != "" {
		oldRaw, err := os.ReadFile(oldPath)
		if err != nil {
			return err
		}
		prev, err := open(oldRaw, vkey)
		if err != nil {
			return fmt.Errorf("%s: %v", oldPath, err)
		}
		if prev.origin != cp.origin || prev.tree.N > cp.tree.N {
			return fmt.Errorf("%s: not an older checkpoint of %s", oldPath, cp.origin)
		}
		proof, err := tlog.ProveTree(cp.tree.N, prev.tree.N, hr)
		if err == nil {
			err = tlog.CheckTree(proof, cp.tree.N, cp.tree.Hash, prev.tree.N, prev.tree.Hash)
		}
		if err != nil {
			return fmt.Errorf("the log does not extend %s: %v", oldPath, err)
		}
		fmt.Printf("extends %s (%d entries)\n", oldPath, prev.tree.N)
	}
	fmt.Printf("ok: %s, %d entries, root %v; every tile and entry checks; %d witness cosignatures\n",
		cp.origin, cp.tree.N, cp.tree.Hash, witnessed)
	return nil
}
