package bridge

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var web embed.FS

// Page serves the softphone: plain HTML, CSS and an ES module, embedded in
// the binary (no build step).
func Page() http.Handler {
	sub, _ := fs.Sub(web, "web")
	return http.FileServerFS(sub)
}
