-- lib.lua - helpers for the btprelay-milter scenarios, loaded with dofile().
--
-- test-miltertest.sh defines the globals: milter (the binary), conf (the
-- scenario's configuration), sock (unix:PATH), work (the work directory),
-- emuctl (a command prefix for the emulator's control API, or "").

-- check - fail the scenario with a message
function check(cond, what)
	if not cond then
		error(what, 2)
	end
end

-- start - run the filter in the foreground and connect to it
function start()
	mt.startfilter(milter, "-f", "-c", conf)
	return connect()
end

-- connect - one more MTA connection to the running filter
function connect()
	local conn = mt.connect(sock, 100, 0.1)
	check(conn ~= nil, "cannot connect to the milter at " .. sock)
	return conn
end

-- mail - MAIL FROM with a queue id; the filter must continue
function mail(conn, from, qid)
	mt.macro(conn, SMFIC_MAIL, "i", qid or "QID0")
	check(mt.mailfrom(conn, from) == nil, "mt.mailfrom failed")
	check(mt.getreply(conn) == SMFIR_CONTINUE, "MAIL FROM " .. from .. ": not continued")
end

-- rcpt - RCPT TO routed by the MTA to mailer:host (no routing macros when mailer is nil);
-- returns the filter's reply
function rcpt(conn, addr, mailer, host, qid)
	if mailer == nil then
		mt.macro(conn, SMFIC_RCPT, "i", qid or "QID0")
	else
		mt.macro(conn, SMFIC_RCPT, "i", qid or "QID0", "{rcpt_mailer}", mailer,
			 "{rcpt_host}", host, "{rcpt_addr}", addr)
	end
	check(mt.rcptto(conn, "<" .. addr .. ">") == nil, "mt.rcptto failed")
	return mt.getreply(conn)
end

-- expect_rcpt - RCPT with an expected reply: "continue" or "reply" (a reject or
-- tempfail with an SMTP reply; its text is checked in the log by the .expect file)
function expect_rcpt(conn, want, addr, mailer, host, qid)
	local r = rcpt(conn, addr, mailer, host, qid)
	if want == "continue" then
		check(r == SMFIR_CONTINUE, "RCPT " .. addr .. " via " .. tostring(mailer) .. ":" ..
		      tostring(host) .. ": expected continue, got " .. string.char(r))
	else
		check(r == SMFIR_REPLYCODE, "RCPT " .. addr .. " via " .. tostring(mailer) .. ":" ..
		      tostring(host) .. ": expected a reply code, got " .. string.char(r))
	end
end

-- eom - end of message; the filter must continue
function eom(conn)
	check(mt.eom(conn) == nil, "mt.eom failed")
	check(mt.getreply(conn) == SMFIR_CONTINUE, "end of message: not continued")
end

-- emu - a call to the emulator's control API
function emu(method, path, json)
	check(emuctl ~= nil and emuctl ~= "", "no emulator for this scenario")
	local cmd = emuctl .. " " .. method .. " " .. path
	if json ~= nil then
		cmd = cmd .. " '" .. json .. "'"
	end
	local ok = os.execute(cmd .. " >/dev/null")
	check(ok == true or ok == 0, "emuctl " .. method .. " " .. path .. " failed")
end

-- wait_log - wait up to seconds for a line of the filter's log containing text (plain)
function wait_log(text, seconds)
	local tries = math.floor((seconds or 5) * 10)
	for i = 1, tries do
		local f = io.open(work .. "/" .. scenario .. ".log", "r")
		if f ~= nil then
			local all = f:read("*a")
			f:close()
			if string.find(all, text, 1, true) ~= nil then
				return true
			end
		end
		mt.sleep(0.1)
	end
	error("no log line with \"" .. text .. "\" after " .. tostring(seconds or 5) .. " s", 2)
end

-- write_file - replace a file's content
function write_file(path, text)
	local f = io.open(path .. ".tmp", "w")
	check(f ~= nil, "cannot write " .. path)
	f:write(text)
	f:close()
	check(os.rename(path .. ".tmp", path), "cannot rename " .. path .. ".tmp")
end
