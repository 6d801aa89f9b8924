// chenxing-edge console: the page's words in English and Simplified Chinese. zh-CN when the
// browser prefers Chinese (navigator.languages), English otherwise; the button in the top bar
// switches and the choice is kept in this browser (localStorage: no secret in it).
"use strict";

(() => {
  const WORDS = {
    en: {
      logout: "log out", devices_up: "devices up", tags_bad: "tags bad",
      publish_rate: "publish rate", spool_depth: "spool depth", broker: "broker",
      updated: "updated", login_title: "Log in", login_why:
        "This gateway asks who you are: a user (chenxing-gateway users add) or a machine token.",
      user: "user", password: "password", or_token: "or machine token", login_button: "log in",
      tab_overview: "Overview", tab_tags: "Tags", tab_trends: "Trends", tab_config: "Configure",
      devices: "Devices", broker_spool: "Broker and spool", spool: "spool",
      oldest_in_spool: "oldest in spool", dropped: "dropped", models_alarms: "Models and alarms",
      models_off: "Edge models are off (models.enabled).", recent_warnings: "Recent warnings",
      time: "time", level: "level", source: "source", message: "message", times: "times",
      filter: "filter", tag: "tag", value: "value", unit: "unit", quality: "quality", age: "age",
      trend: "trend", chart_tags: "tags", add: "add", window: "window",
      chart_note: "Gaps: BAD or STALE samples (shaded). Bands: alarm thresholds.",
      write_title: "Write a setpoint", current: "current", range: "range",
      new_value: "new value", cancel: "cancel", check_value: "check", confirm_write: "write it",
      confirm_text: "Write {1} to {0}? The device receives it at once.",
      write_sent: "written: {0}", write_refused: "refused: {0}",
      write: "write", up_since: "up since {0}", down_for: "down for {0}",
      starting_since: "starting since {0}", stopped: "stopped",
      state_up: "up", state_down: "down", state_starting: "starting", state_stopped: "stopped",
      samples_per_s: "{0} samples/s", tags_of: "{0} tags, {1} bad", protocol: "protocol",
      last_error: "last error", no_error: "no error",
      connected: "connected", disconnected: "disconnected",
      messages_per_s: "{0} msg/s", messages: "{0} messages, {1}", empty: "empty",
      hidden_lines: "(protocol library lines not shown: {0})", none: "none",
      shown_of: "{0} of {1}", alarm_active: "ACTIVE since {0}", alarm_clear: "clear",
      model_loaded: "loaded", model_not_loaded: "not loaded",
      login_refused: "Login refused: {0}", unreachable: "Cannot reach the gateway: {0}. Retrying…",
      session_ended: "The session ended or the token was refused: log in again.",
      lang_switch: "中文", q_good: "good", q_bad: "bad", q_uncertain: "uncertain",
      q_stale: "stale", q_none: "no value", last_good: "last good {0}, {1} ago",
      not_numeric: "(not numeric)", remove: "remove",
      write_not_number: "not a number", write_out_of_range: "outside the range {0}",
      tab_messages: "Messages", kind: "kind", topic: "topic", content: "content",
      messages_note: "What the gateway published, newest first, decoded.",
      err_refused: "nothing answers at its address (connection refused)",
      err_timeout: "no answer in time (timeout)",
      err_unreachable: "its network cannot be reached",
      err_dns: "its host name is unknown",
      err_reset: "the connection was cut",
      err_device_exception: "the device refused a request (protocol exception)",
      err_permission: "permission denied (port or file)",
    },
    "zh-CN": {
      logout: "退出登录", devices_up: "在线设备", tags_bad: "异常点位",
      publish_rate: "发布速率", spool_depth: "缓存深度", broker: "消息代理",
      updated: "更新于", login_title: "登录", login_why:
        "此网关需要确认您的身份：用户（chenxing-gateway users add）或机器令牌。",
      user: "用户", password: "密码", or_token: "或机器令牌", login_button: "登录",
      tab_overview: "总览", tab_tags: "点位", tab_trends: "趋势", tab_config: "配置",
      devices: "设备", broker_spool: "消息代理与缓存", spool: "缓存",
      oldest_in_spool: "最早缓存", dropped: "已丢弃", models_alarms: "模型与报警",
      models_off: "边缘模型未启用（models.enabled）。", recent_warnings: "最近警告",
      time: "时间", level: "级别", source: "来源", message: "消息", times: "次数",
      filter: "筛选", tag: "点位", value: "值", unit: "单位", quality: "质量", age: "时长",
      trend: "趋势", chart_tags: "点位", add: "添加", window: "时间窗",
      chart_note: "空缺：BAD 或 STALE 采样（阴影）。色带：报警阈值。",
      write_title: "写入设定值", current: "当前值", range: "范围",
      new_value: "新值", cancel: "取消", check_value: "检查", confirm_write: "确认写入",
      confirm_text: "将 {1} 写入 {0}？设备将立即收到。",
      write_sent: "已写入：{0}", write_refused: "被拒绝：{0}",
      write: "写入", up_since: "自 {0} 起在线", down_for: "已离线 {0}",
      starting_since: "自 {0} 起启动中", stopped: "已停止",
      state_up: "在线", state_down: "离线", state_starting: "启动中", state_stopped: "已停止",
      samples_per_s: "{0} 采样/秒", tags_of: "{0} 个点位，{1} 个异常", protocol: "协议",
      last_error: "最近错误", no_error: "无错误",
      connected: "已连接", disconnected: "未连接",
      messages_per_s: "{0} 条/秒", messages: "{0} 条消息，{1}", empty: "空",
      hidden_lines: "（未显示的协议库日志：{0} 行）", none: "无",
      shown_of: "{0} / {1}", alarm_active: "报警中，自 {0} 起", alarm_clear: "正常",
      model_loaded: "已加载", model_not_loaded: "未加载",
      login_refused: "登录被拒绝：{0}", unreachable: "无法连接网关：{0}。正在重试…",
      session_ended: "会话已结束或令牌被拒绝：请重新登录。",
      lang_switch: "English", q_good: "良好", q_bad: "坏值", q_uncertain: "不确定",
      q_stale: "陈旧", q_none: "无值", last_good: "最后良好值 {0}，{1} 前",
      not_numeric: "（非数值）", remove: "移除",
      write_not_number: "不是数字", write_out_of_range: "超出范围 {0}",
      tab_messages: "消息", kind: "类型", topic: "主题", content: "内容",
      messages_note: "网关发布的消息，最新在前，已解码。",
      err_refused: "地址无应答（连接被拒绝）",
      err_timeout: "应答超时",
      err_unreachable: "网络不可达",
      err_dns: "主机名未知",
      err_reset: "连接被中断",
      err_device_exception: "设备拒绝了请求（协议异常）",
      err_permission: "权限不足（端口或文件）",
    },
  };
  const KEY = "chenxing-console-lang";

  function preferred() {
    const kept = localStorage.getItem(KEY);
    if (kept && WORDS[kept]) return kept;
    for (const lang of navigator.languages || [navigator.language || "en"]) {
      const l = lang.toLowerCase();
      if (l.startsWith("zh")) return "zh-CN";
      if (l.startsWith("en")) return "en";
    }
    return "en";
  }

  let lang = preferred();

  function t(key, ...args) {
    const text = (WORDS[lang] && WORDS[lang][key]) || WORDS.en[key] || key;
    return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ""));
  }

  function apply(root = document) {
    document.documentElement.lang = lang;
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  }

  function toggle() {
    lang = lang === "en" ? "zh-CN" : "en";
    localStorage.setItem(KEY, lang);
    apply();
  }

  window.ChxI18n = { t, apply, toggle, get lang() { return lang; } };
})();
