package modeltest

func checkHalfClose(e *env)    { e.t.Skip("modeltest: half-close not written yet") }
func checkReset(e *env)        { e.t.Skip("modeltest: reset not written yet") }
func checkIdleTimeout(e *env)  { e.t.Skip("modeltest: idle-timeout not written yet") }
func checkMaxConns(e *env)     { e.t.Skip("modeltest: max-conns not written yet") }
func checkShutdown(e *env)     { e.t.Skip("modeltest: shutdown not written yet") }
func checkLeaks(e *env)        { e.t.Skip("modeltest: leaks not written yet") }
func checkFDExhaustion(e *env) { e.t.Skip("modeltest: fd-exhaustion not written yet") }
func checkSocketFile(e *env)   { e.t.Skip("modeltest: socket-file not written yet") }
