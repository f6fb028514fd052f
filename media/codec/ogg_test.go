package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A minimal Ogg (RFC 3533) writer and reader for Ogg Opus files (RFC 7845),
// only for tests: it lets ffmpeg decode the packets our Opus binding makes
// and lets us read the packets ffmpeg encodes.

var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

func oggCRC(b []byte) uint32 {
	var crc uint32
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

// oggOpusFile wraps packets (48 kHz mono) in an Ogg Opus stream, one
// packet per page, with the given pre-skip; samples is the number of
// samples the packets decode to after pre-skip, for the final granule.
func oggOpusFile(packets [][]byte, preSkip, samples int) []byte {
	var out bytes.Buffer
	seq := uint32(0)
	page := func(flags byte, granule int64, packet []byte) {
		h := []byte("OggS\x00")
		h = append(h, flags)
		h = binary.LittleEndian.AppendUint64(h, uint64(granule))
		h = binary.LittleEndian.AppendUint32(h, 0x5b0a7d)
		h = binary.LittleEndian.AppendUint32(h, seq)
		h = binary.LittleEndian.AppendUint32(h, 0) // CRC, filled below
		var lacing []byte
		n := len(packet)
		for n >= 255 {
			lacing = append(lacing, 255)
			n -= 255
		}
		lacing = append(lacing, byte(n))
		h = append(h, byte(len(lacing)))
		h = append(h, lacing...)
		h = append(h, packet...)
		binary.LittleEndian.PutUint32(h[22:], oggCRC(h))
		out.Write(h)
		seq++
	}
	head := []byte("OpusHead\x01\x01")
	head = binary.LittleEndian.AppendUint16(head, uint16(preSkip))
	head = binary.LittleEndian.AppendUint32(head, 48000)
	head = append(head, 0, 0, 0) // output gain 0, mapping family 0
	page(0x02, 0, head)
	tags := []byte("OpusTags")
	tags = binary.LittleEndian.AppendUint32(tags, 11)
	tags = append(tags, "switchboard"...)
	tags = binary.LittleEndian.AppendUint32(tags, 0)
	page(0, 0, tags)
	granule := int64(0)
	for i, p := range packets {
		granule += 960
		flags := byte(0)
		if i == len(packets)-1 {
			flags = 0x04
			granule = int64(preSkip + samples)
		}
		page(flags, granule, p)
	}
	return out.Bytes()
}

// readOggOpus returns the audio packets of an Ogg Opus file, its pre-skip
// and its channel count.
func readOggOpus(b []byte) (packets [][]byte, preSkip, channels int, err error) {
	var all [][]byte
	var cur []byte
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			return nil, 0, 0, fmt.Errorf("ogg: bad page at %d bytes from the end", len(b))
		}
		nseg := int(b[26])
		if len(b) < 27+nseg {
			return nil, 0, 0, fmt.Errorf("ogg: short segment table")
		}
		lacing := b[27 : 27+nseg]
		body := b[27+nseg:]
		for _, l := range lacing {
			if len(body) < int(l) {
				return nil, 0, 0, fmt.Errorf("ogg: short page body")
			}
			cur = append(cur, body[:l]...)
			body = body[l:]
			if l < 255 {
				all = append(all, cur)
				cur = nil
			}
		}
		b = body
	}
	if len(all) < 2 || !bytes.HasPrefix(all[0], []byte("OpusHead")) || len(all[0]) < 19 {
		return nil, 0, 0, fmt.Errorf("ogg: no OpusHead")
	}
	return all[2:], int(binary.LittleEndian.Uint16(all[0][10:])), int(all[0][9]), nil
}
