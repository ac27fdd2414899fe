// Command loadgen is the HTTP client of bench/run.sh: it pushes, pulls and
// lists against an OCI Distribution registry on loopback and prints one JSON
// object per invocation. Standard library only, so it builds offline.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var client = &http.Client{Transport: &http.Transport{
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 256,
	DisableCompression:  true,
	WriteBufferSize:     1 << 20,
	ReadBufferSize:      1 << 20,
}}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

func emit(v any) {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		die("%v", err)
	}
}

func do(req *http.Request, want ...int) (*http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	for _, w := range want {
		if resp.StatusCode == w {
			return resp, nil
		}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	return nil, fmt.Errorf("%s %s: status %d: %s", req.Method, req.URL, resp.StatusCode, body)
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// location resolves an upload Location header against the base URL.
func location(base string, resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("no Location header")
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	l, err := b.Parse(loc)
	if err != nil {
		return "", err
	}
	return l.String(), nil
}

func withDigest(loc, digest string) string {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return loc + sep + "digest=" + url.QueryEscape(digest)
}

func startUpload(base, repo string) (string, error) {
	req, _ := http.NewRequest("POST", base+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := do(req, 202)
	if err != nil {
		return "", err
	}
	drain(resp)
	return location(base, resp)
}

// pushMonolithic does POST then one PUT ?digest= carrying the whole body.
func pushMonolithic(base, repo, digest string, body io.Reader, size int64) error {
	loc, err := startUpload(base, repo)
	if err != nil {
		return err
	}
	req, _ := http.NewRequest("PUT", withDigest(loc, digest), body)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := do(req, 201)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// pushChunked does POST, one PATCH per chunk with Content-Range, and a final empty PUT.
func pushChunked(base, repo, digest string, f *os.File, size, chunk int64) error {
	loc, err := startUpload(base, repo)
	if err != nil {
		return err
	}
	for off := int64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		req, _ := http.NewRequest("PATCH", loc, io.NewSectionReader(f, off, n))
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
		resp, err := do(req, 202)
		if err != nil {
			return err
		}
		drain(resp)
		if loc, err = location(base, resp); err != nil {
			return err
		}
	}
	req, _ := http.NewRequest("PUT", withDigest(loc, digest), nil)
	req.ContentLength = 0
	resp, err := do(req, 201)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func putManifest(base, repo, ref, mediaType string, body []byte) error {
	req, _ := http.NewRequest("PUT", base+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", mediaType)
	resp, err := do(req, 201)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// tinyImage returns a config blob, a layer blob and a manifest referencing both.
func tinyImage(salt string) (config, layer, manifest []byte) {
	config = []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]},"config":{"Labels":{"salt":%q}}}`, sha([]byte("layer")), salt))
	layer = []byte("layer")
	manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		ociManifest, sha(config), len(config), sha(layer), len(layer)))
	return
}

func pushTiny(base, repo, salt string) ([]byte, error) {
	config, layer, manifest := tinyImage(salt)
	for _, b := range [][]byte{config, layer} {
		if err := pushMonolithic(base, repo, sha(b), bytes.NewReader(b), int64(len(b))); err != nil {
			return nil, err
		}
	}
	return manifest, nil
}

// parallel runs f(i) for i in [0,n) on conc workers and returns the first error.
func parallel(n, conc int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return e.(error)
	}
	return nil
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func main() {
	if len(os.Args) < 2 {
		die("usage: loadgen push|pull|concurrent-push|seed-tags|seed-repos|list|push-image [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	base := fs.String("base", "", "registry base URL, e.g. http://127.0.0.1:5000")
	repo := fs.String("repo", "bench/blob", "repository")
	file := fs.String("file", "", "file to push")
	digest := fs.String("digest", "", "digest of -file")
	chunk := fs.Int64("chunk", 0, "PATCH chunk size in bytes (0: monolithic PUT)")
	clients := fs.Int("clients", 32, "concurrent clients")
	size := fs.Int64("size", 8<<20, "bytes per blob")
	count := fs.Int("count", 0, "number of tags or repositories")
	conc := fs.Int("conc", 16, "concurrency")
	path := fs.String("path", "", "URL path to list, e.g. /v2/_catalog")
	key := fs.String("key", "", "JSON key holding the listed items")
	dur := fs.Duration("duration", 3*time.Second, "how long to list for")
	layout := fs.String("layout", "", "OCI image layout directory")
	tag := fs.String("tag", "latest", "tag")
	method := fs.String("method", "GET", "HTTP method for hammer")
	accept := fs.String("accept", "", "Accept header for hammer")
	fs.Parse(os.Args[2:])
	if *base == "" {
		die("-base is required")
	}

	switch os.Args[1] {
	case "push":
		f, err := os.Open(*file)
		if err != nil {
			die("%v", err)
		}
		st, _ := f.Stat()
		start := time.Now()
		if *chunk > 0 {
			err = pushChunked(*base, *repo, *digest, f, st.Size(), *chunk)
		} else {
			err = pushMonolithic(*base, *repo, *digest, f, st.Size())
		}
		secs := time.Since(start).Seconds()
		if err != nil {
			die("%v", err)
		}
		emit(map[string]any{"seconds": secs, "bytes": st.Size(), "mb_per_s": float64(st.Size()) / 1e6 / secs})

	case "pull":
		req, _ := http.NewRequest("GET", *base+"/v2/"+*repo+"/blobs/"+*digest, nil)
		start := time.Now()
		resp, err := do(req, 200)
		if err != nil {
			die("%v", err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		secs := time.Since(start).Seconds()
		if err != nil || n != *size {
			die("pull: got %d bytes, want %d: %v", n, *size, err)
		}
		emit(map[string]any{"seconds": secs, "bytes": n, "mb_per_s": float64(n) / 1e6 / secs})

	case "concurrent-push":
		// Distinct random content per blob and per invocation, so no push is a dedup hit.
		bufs := make([][]byte, *clients)
		digests := make([]string, *clients)
		seed := uint64(time.Now().UnixNano())
		for i := range bufs {
			r := rand.NewChaCha8([32]byte{byte(i), byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), byte(seed >> 32), byte(seed >> 40)})
			bufs[i] = make([]byte, *size)
			r.Read(bufs[i])
			digests[i] = sha(bufs[i])
		}
		var errs atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range bufs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-gate
				if err := pushMonolithic(*base, fmt.Sprintf("%s%d", *repo, i), digests[i], bytes.NewReader(bufs[i]), *size); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}(i)
		}
		start := time.Now()
		close(gate)
		wg.Wait()
		secs := time.Since(start).Seconds()
		total := float64(*size) * float64(*clients)
		emit(map[string]any{"seconds": secs, "bytes": total, "mb_per_s": total / 1e6 / secs, "errors": errs.Load(), "first_error": firstErr.Load()})

	case "seed-tags":
		manifest, err := pushTiny(*base, *repo, "tags")
		if err != nil {
			die("%v", err)
		}
		start := time.Now()
		err = parallel(*count, *conc, func(i int) error {
			return putManifest(*base, *repo, fmt.Sprintf("t%05d", i), ociManifest, manifest)
		})
		if err != nil {
			die("%v", err)
		}
		emit(map[string]any{"seconds": time.Since(start).Seconds(), "tags": *count})

	case "seed-repos":
		start := time.Now()
		err := parallel(*count, *conc, func(i int) error {
			r := fmt.Sprintf("%s%05d", *repo, i)
			manifest, err := pushTiny(*base, r, "repos")
			if err != nil {
				return err
			}
			return putManifest(*base, r, "latest", ociManifest, manifest)
		})
		if err != nil {
			die("%v", err)
		}
		emit(map[string]any{"seconds": time.Since(start).Seconds(), "repositories": *count})

	case "list":
		// Each worker fetches the complete listing, following Link headers,
		// again and again until the duration is up.
		var mu sync.Mutex
		var lat []float64
		var items atomic.Int64
		var errs atomic.Int64
		deadline := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for w := 0; w < *conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					t0 := time.Now()
					n, err := listAll(*base, *path, *key)
					if err != nil {
						errs.Add(1)
						fmt.Fprintln(os.Stderr, err)
						return
					}
					d := time.Since(t0).Seconds()
					items.Store(int64(n))
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
		start := time.Now()
		wg.Wait()
		secs := time.Since(start).Seconds()
		sort.Float64s(lat)
		emit(map[string]any{"listings": len(lat), "listings_per_s": float64(len(lat)) / secs, "items": items.Load(),
			"p50_ms": percentile(lat, 0.5) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3, "errors": errs.Load()})

	case "hammer":
		emit(hammer(*base, *path, *method, *accept, *conc, *dur))

	case "push-image":
		if err := pushImage(*base, *repo, *tag, *layout); err != nil {
			die("%v", err)
		}
		emit(map[string]any{"pushed": *repo + ":" + *tag})

	default:
		die("unknown command %q", os.Args[1])
	}
}

// countListed checks that body is a JSON object and counts the strings in
// its array `key` (absent or null: none).
func countListed(body []byte, key string) (int, error) {
	if !json.Valid(body) {
		return 0, fmt.Errorf("listing is not valid JSON: %.80q", body)
	}
	start := bytes.Index(body, []byte(`"`+key+`":`))
	if start < 0 {
		return 0, nil
	}
	rest := bytes.TrimLeft(body[start+len(key)+3:], " \t\r\n")
	if bytes.HasPrefix(rest, []byte("null")) {
		return 0, nil
	}
	end := bytes.IndexByte(rest, ']')
	if !bytes.HasPrefix(rest, []byte("[")) || end < 0 {
		return 0, fmt.Errorf("%q is not a list", key)
	}
	quotes := bytes.Count(rest[:end], []byte(`"`))
	if quotes%2 != 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return 0, fmt.Errorf("%q holds names with quotes or escapes", key)
	}
	return quotes / 2, nil
}

func listAll(base, path, key string) (int, error) {
	next := base + path
	total := 0
	for next != "" {
		req, _ := http.NewRequest("GET", next, nil)
		resp, err := do(req, 200)
		if err != nil {
			return 0, err
		}
		// The client's JSON work is paid on both registries' side of a row
		// and must not dominate it: the body is checked to be valid JSON, and
		// the names in its list are counted without decoding them (tag and
		// repository names hold no quotes or escapes).
		raw, err := io.ReadAll(resp.Body)
		drain(resp)
		if err != nil {
			return 0, err
		}
		n, err := countListed(raw, key)
		if err != nil {
			return 0, err
		}
		total += n
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			i, j := strings.Index(link, "<"), strings.Index(link, ">")
			if i < 0 || j < i {
				return 0, fmt.Errorf("bad Link %q", link)
			}
			u, err := url.Parse(base)
			if err != nil {
				return 0, err
			}
			l, err := u.Parse(link[i+1 : j])
			if err != nil {
				return 0, err
			}
			next = l.String()
		}
	}
	return total, nil
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// pushImage pushes the first manifest of an OCI image layout: blobs first, then the manifest.
func pushImage(base, repo, tag, dir string) error {
	var index struct{ Manifests []descriptor }
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &index); err != nil || len(index.Manifests) == 0 {
		return fmt.Errorf("bad index.json: %v", err)
	}
	blobPath := func(d string) string { return filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")) }
	md := index.Manifests[0]
	mbytes, err := os.ReadFile(blobPath(md.Digest))
	if err != nil {
		return err
	}
	var m struct {
		Config descriptor
		Layers []descriptor
	}
	if err := json.Unmarshal(mbytes, &m); err != nil {
		return err
	}
	for _, d := range append([]descriptor{m.Config}, m.Layers...) {
		req, _ := http.NewRequest("HEAD", base+"/v2/"+repo+"/blobs/"+d.Digest, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				continue
			}
		}
		f, err := os.Open(blobPath(d.Digest))
		if err != nil {
			return err
		}
		err = pushMonolithic(base, repo, d.Digest, f, d.Size)
		f.Close()
		if err != nil {
			return err
		}
	}
	return putManifest(base, repo, tag, md.MediaType, mbytes)
}

// hammer keeps conc keep-alive connections busy with one request at a time
// each, for dur, over raw HTTP/1.1 (cheaper than net/http, and unlike wrk 4.1
// it handles HEAD responses), and reports requests/s and latency percentiles.
func hammer(base, path, method, accept string, conc int, dur time.Duration) map[string]any {
	u, err := url.Parse(base)
	if err != nil {
		die("%v", err)
	}
	req := method + " " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if accept != "" {
		req += "Accept: " + accept + "\r\n"
	}
	req += "\r\n"
	head := method == "HEAD"
	lats := make([][]float64, conc)
	var errs, non2xx atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				errs.Add(1)
				return
			}
			defer conn.Close()
			r := bufio.NewReaderSize(conn, 64<<10)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if _, err := io.WriteString(conn, req); err != nil {
					errs.Add(1)
					return
				}
				status, err := readResponse(r, head)
				if err != nil {
					errs.Add(1)
					return
				}
				if status < 200 || status > 299 {
					non2xx.Add(1)
				}
				lats[c] = append(lats[c], time.Since(t0).Seconds())
			}
		}(c)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	var all []float64
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Float64s(all)
	return map[string]any{"requests": len(all), "rps": float64(len(all)) / secs,
		"p50_ms": percentile(all, 0.5) * 1e3, "p99_ms": percentile(all, 0.99) * 1e3,
		"errors": errs.Load(), "non_2xx": non2xx.Load()}
}

// readResponse reads one response with a Content-Length (or no body for HEAD).
func readResponse(r *bufio.Reader, head bool) (int, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, err
	}
	length := int64(0)
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return 0, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "content-length":
			length, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, err
			}
		case "transfer-encoding":
			return 0, fmt.Errorf("chunked responses are not supported")
		}
	}
	if head {
		return status, nil
	}
	_, err = io.CopyN(io.Discard, r, length)
	return status, err
}
