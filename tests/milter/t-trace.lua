-- t-trace: one trace header per message routed to btprelay, naming each destination once
dofile(srcdir .. "/tests/milter/lib.lua")
local conn = start()
mail(conn, "<app@example.com>", "QID1")
expect_rcpt(conn, "continue", "a@corp.example", "btprelay", "MAIL_OK", "QID1")
expect_rcpt(conn, "continue", "b@corp.example", "btprelay", "MAIL_OK", "QID1")
expect_rcpt(conn, "continue", "c@nofrom.example", "btprelay", "MAIL_NOFROM", "QID1")
eom(conn)
check(mt.eom_check(conn, MT_HDRADD, "X-BTPRelay-Destination", "MAIL_OK, MAIL_NOFROM"),
      "no X-BTPRelay-Destination: MAIL_OK, MAIL_NOFROM")
check(mt.getheader(conn, "X-BTPRelay-Destination", 1) == nil, "more than one trace header")
mt.disconnect(conn)
-- not routed to btprelay: no header
conn = connect()
mail(conn, "<app@example.com>", "QID2")
expect_rcpt(conn, "continue", "a@example.net", "smtp", "[mx.example.net]", "QID2")
eom(conn)
check(not mt.eom_check(conn, MT_HDRADD), "a header was added to mail not routed to btprelay")
mt.disconnect(conn)
