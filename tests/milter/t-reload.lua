-- t-reload: SIGHUP with a changed configuration
dofile(srcdir .. "/tests/milter/lib.lua")
local SIGHUP = 1
local conn = start()
mail(conn, "<app@example.com>", "QID1")
expect_rcpt(conn, "reply", "a@new.example", "btprelay", "MAIL_NEW", "QID1")
eom(conn)
mt.disconnect(conn)

-- a message that started before the reload keeps the rules it started with
local old = connect()
mail(old, "<app@example.com>", "QID2")
check(os.rename(work .. "/t-reload.new.conf", conf), "cannot install the new configuration")
mt.signal(SIGHUP)
wait_log("configuration reloaded from", 5)
expect_rcpt(old, "reply", "b@new.example", "btprelay", "MAIL_NEW", "QID2")
eom(old)
mt.disconnect(old)

-- new messages: new configuration, empty cache
conn = connect()
mail(conn, "<app@example.com>", "QID3")
expect_rcpt(conn, "continue", "c@new.example", "btprelay", "MAIL_NEW", "QID3")
eom(conn)
check(mt.eom_check(conn, MT_HDRADD, "X-BTPRelay-Destination", "MAIL_NEW"),
      "no trace header: the new configuration is not in force")
mt.disconnect(conn)

-- a broken configuration is refused and the running one stays
write_file(conf, "bindings_file =\nmilter_on_error = bounce\n")
mt.signal(SIGHUP)
wait_log("reload failed, keeping the running configuration", 5)
conn = connect()
mail(conn, "<app@example.com>", "QID4")
expect_rcpt(conn, "continue", "d@new.example", "btprelay", "MAIL_NEW", "QID4")
eom(conn)
mt.disconnect(conn)
