package media

import "testing"

func TestDTMFCodes(t *testing.T) {
	for i, d := range "0123456789*#ABCD" {
		code, ok := DTMFCode(d)
		if !ok || int(code) != i || DTMFDigit(code) != d {
			t.Fatalf("%c: code %d ok %v", d, code, ok)
		}
	}
	if c, ok := DTMFCode('b'); !ok || c != 13 {
		t.Fatal("lower-case letters")
	}
	if _, ok := DTMFCode('x'); ok {
		t.Fatal("x accepted")
	}
	if DTMFDigit(16) != 0 {
		t.Fatal("flash is not a digit")
	}
}

func TestTelephoneEventRoundTrip(t *testing.T) {
	ev := TelephoneEvent{Event: 11, End: true, Volume: 10, Duration: 800}
	got, err := ParseTelephoneEvent(ev.AppendTo(nil))
	if err != nil || got != ev {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseTelephoneEvent([]byte{1, 2, 3}); err == nil {
		t.Fatal("short payload accepted")
	}
}

func TestDTMFSenderTrain(t *testing.T) {
	s := dtmfSender{code: 5, total: 800, step: 160}
	var evs []TelephoneEvent
	first := 0
	for range 20 {
		ev, f, done := s.next()
		if f {
			first++
		}
		evs = append(evs, ev)
		if done {
			break
		}
	}
	// 5 updates reach 800, the 5th is the first end packet, then 2 more ends.
	if len(evs) != 7 || first != 1 {
		t.Fatalf("%d packets, %d first: %+v", len(evs), first, evs)
	}
	ends := 0
	for i, ev := range evs {
		if ev.End {
			ends++
			if ev.Duration != 800 {
				t.Fatalf("end packet %d duration %d", i, ev.Duration)
			}
		} else if ev.Duration != uint16(160*(i+1)) {
			t.Fatalf("update %d duration %d", i, ev.Duration)
		}
	}
	if ends != 3 {
		t.Fatalf("%d end packets, want 3", ends)
	}
}
