package media

// Tee returns a Sink that writes every frame to each of sinks in order
// (nil sinks are skipped) and returns the first error. With one non-nil
// sink it returns that sink; with none, nil. Cost: one call per sink per
// frame, no allocation.
func Tee(sinks ...Sink) Sink {
	var live []Sink
	for _, s := range sinks {
		if s != nil {
			live = append(live, s)
		}
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		return live[0]
	}
	return teeSink(live)
}

type teeSink []Sink

func (t teeSink) WriteFrame(f *Frame) error {
	var first error
	for _, s := range t {
		if err := s.WriteFrame(f); err != nil && first == nil {
			first = err
		}
	}
	return first
}
