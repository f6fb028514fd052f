package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
)

var (
	pidType  = reflect.TypeOf((*actor.PID)(nil))
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage(nil))
)

// plainProblems returns why t cannot cross nodes as data: a chan, func,
// interface or unsafe.Pointer anywhere in it, a pointer to anything but a
// plain struct, or an unexported struct field (which JSON and protobuf
// would drop). *actor.PID and time.Time are plain.
func plainProblems(t reflect.Type, path string, seen map[reflect.Type]bool) []string {
	if t == pidType || t == timeType {
		return nil
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.String:
		return nil
	case reflect.Slice, reflect.Array:
		return plainProblems(t.Elem(), path+"[]", seen)
	case reflect.Map:
		return append(plainProblems(t.Key(), path+"{key}", seen), plainProblems(t.Elem(), path+"{}", seen)...)
	case reflect.Pointer:
		if t.Elem().Kind() != reflect.Struct {
			return []string{fmt.Sprintf("%s: pointer to %s", path, t.Elem())}
		}
		return plainProblems(t.Elem(), path, seen)
	case reflect.Struct:
		if seen[t] {
			return nil
		}
		seen[t] = true
		var out []string
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				out = append(out, fmt.Sprintf("%s.%s: unexported field (it would not travel)", path, f.Name))
				continue
			}
			out = append(out, plainProblems(f.Type, path+"."+f.Name, seen)...)
		}
		return out
	}
	return []string{fmt.Sprintf("%s: %s is not data", path, t)}
}

// fill sets every field of v to a non-zero value, so a field that a JSON
// round trip loses shows up as a difference.
func fill(v reflect.Value, n *int) {
	*n++
	switch {
	case v.Type() == pidType:
		v.Set(reflect.ValueOf(&actor.PID{Address: "node-1:8090", Id: fmt.Sprintf("call/%d", *n)}))
		return
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(time.Date(2026, 11, 30, 7, 0, *n, 0, time.UTC)))
		return
	case v.Type() == rawType:
		v.Set(reflect.ValueOf(json.RawMessage(fmt.Sprintf(`{"n":%d}`, *n))))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1) // 1 is a valid value of every enum here
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n) + 0.5)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), n)
		fill(s.Index(1), n)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), n)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	}
}

// TestActorMessagesArePlainData: every message a call or room actor
// accepts is plain data that survives a JSON round trip unchanged, and
// every type the actors switch on is in the list.
func TestActorMessagesArePlainData(t *testing.T) {
	names := map[string]bool{}
	for _, m := range actorMessages {
		typ := reflect.TypeOf(m)
		name := typ.Elem().Name()
		names[name] = true
		t.Run(name, func(t *testing.T) {
			if probs := plainProblems(typ, name, map[reflect.Type]bool{}); len(probs) > 0 {
				t.Fatalf("not plain data:\n%s", strings.Join(probs, "\n"))
			}
			n := 0
			want := reflect.New(typ.Elem())
			fill(want.Elem(), &n)
			b, err := json.Marshal(want.Interface())
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got := reflect.New(typ.Elem())
			if err := json.Unmarshal(b, got.Interface()); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if !reflect.DeepEqual(want.Interface(), got.Interface()) {
				t.Fatalf("JSON round trip changed the message:\nsent %+v\ngot  %+v\nwire %s", want.Elem(), got.Elem(), b)
			}
		})
	}
	// Every *T a call, room or leg actor's methods switch on must be
	// listed.
	for _, typ := range switchedTypes(t, "callActor", "roomActor", "legActor") {
		if !names[typ] {
			t.Errorf("the call or room actor accepts *%s, which is not in actorMessages (messages.go)", typ)
		}
	}
}

// switchedTypes returns the local types T that methods of the given
// receivers use as `case *T:` in type switches.
func switchedTypes(t *testing.T, receivers ...string) []string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			for _, d := range f.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Recv == nil || fn.Body == nil {
					continue
				}
				star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
				if !ok {
					continue
				}
				if id, ok := star.X.(*ast.Ident); !ok || !slices.Contains(receivers, id.Name) {
					continue
				}
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					ts, ok := n.(*ast.TypeSwitchStmt)
					if !ok {
						return true
					}
					for _, c := range ts.Body.List {
						for _, e := range c.(*ast.CaseClause).List {
							if s, ok := e.(*ast.StarExpr); ok {
								if id, ok := s.X.(*ast.Ident); ok && !slices.Contains(out, id.Name) {
									out = append(out, id.Name)
								}
							}
						}
					}
					return true
				})
			}
		}
	}
	if len(out) < 30 {
		t.Fatalf("found only %d message types in the actors' switches: %v", len(out), out)
	}
	return out
}

// TestPlainProblemsCatchesLiveValues checks the checker: each of these
// would smuggle a live object or lose data between nodes.
func TestPlainProblemsCatchesLiveValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"chan", struct{ C chan error }{}},
		{"func", struct{ F func() }{}},
		{"interface", struct{ S media.Source }{}},
		{"any", struct{ D any }{}},
		{"live pointer", struct{ E *media.Endpoint }{}},
		{"signaling", struct{ S Signaling }{}},
		{"pointer to int", struct{ P *int }{}},
		{"unexported", struct{ x string }{}},
		{"nested", struct {
			In []struct{ M map[string]chan int }
		}{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if probs := plainProblems(reflect.TypeOf(tc.v), tc.name, map[reflect.Type]bool{}); len(probs) == 0 {
				t.Fatalf("%T passed as plain data", tc.v)
			}
		})
	}
	if probs := plainProblems(reflect.TypeOf(struct {
		P  *actor.PID
		T  time.Time
		D  time.Duration
		R  json.RawMessage
		M  map[string][]int
		PD *PanicData
	}{}), "ok", map[reflect.Type]bool{}); len(probs) > 0 {
		t.Fatalf("plain types refused: %v", probs)
	}
}

// TestErrorDataRoundTrip: an error crossing an actor boundary as
// ErrorData keeps what callers test for (errors.Is, a SIP status) and
// its text.
func TestErrorDataRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		err  error
		is   []error
		text string
	}{
		{nil, nil, ""},
		{ErrHangup, []error{ErrHangup}, "call hung up"},
		{fmt.Errorf("%w: name must be 1-64 bytes", ErrBadSignal), []error{ErrBadSignal}, "framework: invalid signal: name must be 1-64 bytes"},
		{sip.NewStatusError(486, "Busy Here"), []error{ErrBusy}, "486 Busy Here"},
		{sip.NewStatusError(404, "Not Found"), []error{ErrNotFound}, "404 Not Found"},
		{fmt.Errorf("refer: %w", sip.NewStatusError(603, "Decline")), []error{ErrDeclined}, "refer: 603 Decline"},
		{context.Canceled, []error{context.Canceled}, "context canceled"},
		{media.ErrInterrupted, []error{media.ErrInterrupted}, media.ErrInterrupted.Error()},
		{io.EOF, []error{io.EOF}, "EOF"},
		{fmt.Errorf("sip: dial \"bob\": %w", sip.ErrNotRegistered), []error{sip.ErrNotRegistered, ErrNotFound}, `sip: dial "bob": user not registered`},
		{errNotHere, []error{errNotHere}, errNotHere.Error()},
		{errors.New("only a party of a bridged call can transfer it"), nil, "only a party of a bridged call can transfer it"},
	} {
		b, err := json.Marshal(errData(tc.err))
		if err != nil {
			t.Fatal(err)
		}
		var d *ErrorData
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		got := d.Err()
		if tc.err == nil {
			if got != nil {
				t.Errorf("nil came back as %v", got)
			}
			continue
		}
		if got == nil || got.Error() != tc.text {
			t.Errorf("%v: came back as %v, want text %q (wire %s)", tc.err, got, tc.text, b)
		}
		for _, target := range tc.is {
			if !errors.Is(got, target) {
				t.Errorf("%v: came back as %v, which is not %v", tc.err, got, target)
			}
		}
		var se *sip.StatusError
		if errors.As(tc.err, &se) {
			var gse *sip.StatusError
			if !errors.As(got, &gse) || gse.Code != se.Code || gse.Reason != se.Reason {
				t.Errorf("%v: SIP status lost: %v", tc.err, got)
			}
		}
	}
}
