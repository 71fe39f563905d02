package auditcmd

// LogCommand is "audit log", for the tests of package auditcmd_test.
var LogCommand = logCommand
