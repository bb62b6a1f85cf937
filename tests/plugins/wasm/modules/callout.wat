  ;; An auth-style filter: each request's path is checked by calling the cluster named by the
  ;; plugin configuration (GET <same path>, :authority auth, 300 ms timeout) and paused; the
  ;; callout's answer decides: 200 → the request continues with the callout's body in
  ;; x-auth-body, another status → 403 "denied", no answer (failure, timeout) → 504. A refused
  ;; dispatch answers 500 + its status at once. Metrics: callout.ticks (a counter incremented
  ;; every 50 ms tick), callout.level (a gauge recorded as 7 on each tick), callout.latency (a
  ;; histogram recording 5 on each tick), callout.log and callout.deleted (counters per stream),
  ;; callout.responses and callout.failed (counters of the answers, and of those with 0 headers).
  (func (export "proxy_abi_version_0_2_1"))
  (global $up_ptr (mut i32) (i32.const 0))
  (global $up_len (mut i32) (i32.const 0))
  (global $m_ticks (mut i32) (i32.const 0))
  (global $m_level (mut i32) (i32.const 0))
  (global $m_latency (mut i32) (i32.const 0))
  (global $m_log (mut i32) (i32.const 0))
  (global $m_deleted (mut i32) (i32.const 0))
  (global $m_responses (mut i32) (i32.const 0))
  (global $m_failed (mut i32) (i32.const 0))
  (data (i32.const 1024) ":path")                      ;; 5
  (data (i32.const 1040) ":status")                    ;; 7
  (data (i32.const 1056) "200")                        ;; 3
  (data (i32.const 1072) "x-auth-body")                ;; 11
  (data (i32.const 1088) "denied\n")                   ;; 7
  (data (i32.const 1104) "callout failed\n")           ;; 15
  (data (i32.const 1120) "callout.ticks")              ;; 13
  (data (i32.const 1136) "callout.level")              ;; 13
  (data (i32.const 1152) "callout.latency")            ;; 15
  (data (i32.const 1168) "callout.log")                ;; 11
  (data (i32.const 1184) "callout.deleted")            ;; 15
  (data (i32.const 1200) "callout.responses")          ;; 17
  (data (i32.const 1220) "callout.failed")             ;; 14
  ;; the callout's header map: 3 pairs (:method GET, :authority auth, :path <path>)
  (data (i32.const 4096) "\03\00\00\00\07\00\00\00\03\00\00\00\0a\00\00\00\04\00\00\00\05\00\00\00")
  (data (i32.const 4124) ":method\00GET\00:authority\00auth\00:path\00")
  (func $metric (param $kind i32) (param $name i32) (param $len i32) (result i32)
    (drop (call $proxy_define_metric (local.get $kind) (local.get $name) (local.get $len) (i32.const 28)))
    (i32.load (i32.const 28)))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (local.get $size)
      (i32.const 16) (i32.const 20)))
    (global.set $up_ptr (i32.load (i32.const 16)))
    (global.set $up_len (i32.load (i32.const 20)))
    (global.set $m_ticks (call $metric (i32.const 0) (i32.const 1120) (i32.const 13)))
    (global.set $m_level (call $metric (i32.const 1) (i32.const 1136) (i32.const 13)))
    (global.set $m_latency (call $metric (i32.const 2) (i32.const 1152) (i32.const 15)))
    (global.set $m_log (call $metric (i32.const 0) (i32.const 1168) (i32.const 11)))
    (global.set $m_deleted (call $metric (i32.const 0) (i32.const 1184) (i32.const 15)))
    (global.set $m_responses (call $metric (i32.const 0) (i32.const 1200) (i32.const 17)))
    (global.set $m_failed (call $metric (i32.const 0) (i32.const 1220) (i32.const 14)))
    (drop (call $proxy_set_tick_period_milliseconds (i32.const 50)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param $root i32)
    (drop (call $proxy_increment_metric (global.get $m_ticks) (i64.const 1)))
    (drop (call $proxy_record_metric (global.get $m_level) (i64.const 7)))
    (drop (call $proxy_record_metric (global.get $m_latency) (i64.const 5))))
  (func (export "proxy_on_log") (param $ctx i32)
    (drop (call $proxy_increment_metric (global.get $m_log) (i64.const 1))))
  (func (export "proxy_on_delete") (param $ctx i32)
    (drop (call $proxy_increment_metric (global.get $m_deleted) (i64.const 1))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $len i32) (local $status i32)
    (drop (call $hdr_has (i32.const 0) (i32.const 1024) (i32.const 5)))
    (local.set $len (i32.load (i32.const 20)))
    (i32.store (i32.const 4120) (local.get $len))
    (memory.copy (i32.const 4158) (i32.load (i32.const 16)) (local.get $len))
    (i32.store8 (i32.add (i32.const 4158) (local.get $len)) (i32.const 0))
    (local.set $status (call $proxy_http_call
      (global.get $up_ptr) (global.get $up_len)
      (i32.const 4096) (i32.add (local.get $len) (i32.const 63))
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 300) (i32.const 24)))
    (if (local.get $status)
      (then
        (drop (call $proxy_send_local_response (i32.add (i32.const 500) (local.get $status))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const -1)))
        (return (i32.const 1))))
    (i32.store (i32.add (i32.const 8192) (i32.shl (i32.and (i32.load (i32.const 24)) (i32.const 255)) (i32.const 2)))
      (local.get $ctx))
    (i32.const 1))
  (func (export "proxy_on_http_call_response")
    (param $root i32) (param $token i32) (param $nh i32) (param $bs i32) (param $nt i32)
    (drop (call $proxy_increment_metric (global.get $m_responses) (i64.const 1)))
    (if (i32.eqz (local.get $nh))
      (then (drop (call $proxy_increment_metric (global.get $m_failed) (i64.const 1)))))
    (drop (call $proxy_set_effective_context
      (i32.load (i32.add (i32.const 8192) (i32.shl (i32.and (local.get $token) (i32.const 255)) (i32.const 2))))))
    (if (i32.eqz (local.get $nh))
      (then
        (drop (call $proxy_send_local_response (i32.const 504) (i32.const 0) (i32.const 0)
          (i32.const 1104) (i32.const 15) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return)))
    (if (i32.and
          (call $hdr_has (i32.const 6) (i32.const 1040) (i32.const 7))
          (i32.and (i32.eq (i32.load (i32.const 20)) (i32.const 3))
                   (i32.eq (i32.and (i32.load (i32.load (i32.const 16))) (i32.const 0xffffff))
                           (i32.load (i32.const 1056)))))
      (then
        (if (i32.eqz (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (local.get $bs)
              (i32.const 16) (i32.const 20)))
          (then (call $hdr_add (i32.const 0) (i32.const 1072) (i32.const 11)
            (i32.load (i32.const 16)) (i32.load (i32.const 20)))))
        (drop (call $proxy_continue_stream (i32.const 0)))
        (return)))
    (drop (call $proxy_send_local_response (i32.const 403) (i32.const 0) (i32.const 0)
      (i32.const 1088) (i32.const 7) (i32.const 0) (i32.const 0) (i32.const -1))))
