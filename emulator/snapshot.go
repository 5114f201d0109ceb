package emulator

func (s *Server) loadData(path string) (bool, error) { return false, nil }
func (s *Server) saveData(path string) error         { return nil }
func (s *Server) resumeJobs()                        {}
