package connsync

// resign returns a copy of message b with its MAC recomputed under s's key.
func (s *Sealer) resign(b []byte) []byte {
	c := append([]byte(nil), b...)
	end := len(c) - MACSize
	s.mac.Reset()
	s.mac.Write(c[:end])
	s.mac.Sum(c[end:end])
	return c
}
