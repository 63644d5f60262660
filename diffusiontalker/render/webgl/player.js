/* DiffusionTalker live preview: a small WebGL2 player written for this project (no third-party code).
 *
 * It draws one or more animated heads ("tiles") into ONE canvas, driven by the page's <audio> clock:
 *   frame = round(audio.currentTime * fps), so play, pause and seek all just work.
 *
 * Markup it mounts (made by diffusiontalker/render/preview.py):
 *   <div class="dt-player" id="..." data-dt-player data-dt-anim="{json}" data-dt-head="{json}"|data-dt-head-key="k">
 *     <div class="dt-stage"><canvas class="dt-canvas" width=W height=H></canvas></div>
 *     <audio class="dt-audio" controls src="..."></audio>
 *   </div>
 *
 * Blendshape heads: the neutral mesh, normals, colours and the 52 morph targets (sparse, float16) arrive once per
 * head key. On a GPU the morph position/normal deltas go into one RGBA16F texture (two row blocks per morph) and
 * the vertex shader blends the active weights (compacted to the non-zero ones, passed as uniform arrays) by
 * gl_VertexID. On a software rasteriser (SwiftShader, llvmpipe) the same sum runs in JS over the sparse entries
 * only, once per shown frame (4x faster there); data-dt-blend="gpu"|"cpu" on the element forces either path.
 * Vertex animations: a template mesh plus per-frame float16 offsets; positions and normals are rebuilt on the CPU
 * for the frame shown (cheap for FLAME/VOCASET-sized meshes).
 *
 * Test/benchmark hooks: window.dtPlayers[id] -> {frame, frames, ready, mountedAt, firstFrameAt, drawCount,
 * alwaysDraw (redraw every animation frame), benchmark (draw the next frame every animation frame), project(tile, [x,y,z]) -> [px, py] in CSS pixels of the canvas, resetView(), dispose()};
 * the canvas carries data-frame, data-ready="1" and data-first-frame-ms once the first frame is drawn.
 */
(function () {
  "use strict";
  var VERSION = 1;
  if (window.DTPlayer && window.DTPlayer.version >= VERSION) {
    window.DTPlayer.scan(document);
    return;
  }
  var MAX_MORPHS = 64; // uniform array length (ARKit-52 fits)
  var heads = {}; // key -> decoded head (CPU arrays), shared by every player on the page
  var players = (window.dtPlayers = window.dtPlayers || {});
  var nextId = 0;

  // ---------------------------------------------------------------------------------------------------------------
  // decoding
  function b64bytes(s) {
    var bin = atob(s), n = bin.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function f32(s) { return new Float32Array(b64bytes(s).buffer); }
  function u16(s) { return new Uint16Array(b64bytes(s).buffer); }
  function u32(s) { return new Uint32Array(b64bytes(s).buffer); }
  function ints(s, dtype) { return dtype === "u16" ? u16(s) : u32(s); }

  var HALF = null; // float16 bit pattern -> float32 lookup table
  function halfTable() {
    if (HALF) return HALF;
    HALF = new Float32Array(65536);
    for (var i = 0; i < 65536; i++) {
      var s = i & 0x8000 ? -1 : 1, e = (i >> 10) & 31, m = i & 1023;
      HALF[i] = e === 0 ? s * m * Math.pow(2, -24) : e === 31 ? (m ? NaN : s * Infinity)
        : s * (1 + m / 1024) * Math.pow(2, e - 15);
    }
    return HALF;
  }
  function halfToFloat(h, out) {
    var t = halfTable();
    out = out || new Float32Array(h.length);
    for (var i = 0; i < h.length; i++) out[i] = t[h[i]];
    return out;
  }

  function bounds(pos) {
    var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (var i = 0; i < pos.length; i += 3) {
      for (var a = 0; a < 3; a++) {
        var v = pos[i + a];
        if (v < lo[a]) lo[a] = v;
        if (v > hi[a]) hi[a] = v;
      }
    }
    return { lo: lo, hi: hi };
  }
  function defaultView(pos) {
    var b = bounds(pos);
    var ext = Math.max(b.hi[0] - b.lo[0], b.hi[1] - b.lo[1]);
    return { target: [(b.lo[0] + b.hi[0]) / 2, (b.lo[1] + b.hi[1]) / 2, (b.lo[2] + b.hi[2]) / 2],
      extent: ext, depth: b.hi[2] - b.lo[2] };
  }

  /** Decode a head payload (see preview.head_payload) into CPU arrays; the morphs stay sparse (float16 bits). */
  function decodeHead(h) {
    var M = h.morphs.names.length, counts = h.morphs.counts, start = new Int32Array(M + 1);
    for (var k = 0; k < M; k++) start[k + 1] = start[k] + counts[k];
    var head = {
      key: h.key, V: h.V, M: M, names: h.morphs.names,
      positions: f32(h.neutral), indices: ints(h.faces, h.faces_dtype),
      normals: halfToFloat(u16(h.normals)), colors: b64bytes(h.colors),
      sparse: { start: start, index: ints(h.morphs.index, h.morphs.index_dtype),
        delta: u16(h.morphs.delta), ndelta: u16(h.morphs.ndelta) },
      decoded: true,
    };
    head.view = h.view || defaultView(head.positions);
    return head;
  }

  /** The GPU path's RGBA16F texture: width W, R rows per block; block 2k = position deltas of morph k, 2k+1 =
   * its normal deltas (built once per head, on first use). */
  function deltaTexture(head) {
    if (head.tex) return head.tex;
    var V = head.V, M = head.M, W = Math.min(V, 2048), R = Math.ceil(V / W), H = 2 * M * R;
    var tex = new Uint16Array(W * H * 4); // zeros = no displacement
    var sp = head.sparse, idx = sp.index, dp = sp.delta, dn = sp.ndelta;
    for (var k = 0; k < M; k++) {
      for (var j = sp.start[k]; j < sp.start[k + 1]; j++) {
        var vid = idx[j], x = vid % W, y = Math.floor(vid / W);
        var p = ((2 * k * R + y) * W + x) * 4, q = (((2 * k + 1) * R + y) * W + x) * 4;
        tex[p] = dp[3 * j]; tex[p + 1] = dp[3 * j + 1]; tex[p + 2] = dp[3 * j + 2];
        tex[q] = dn[3 * j]; tex[q + 1] = dn[3 * j + 1]; tex[q + 2] = dn[3 * j + 2];
      }
    }
    head.tex = { W: W, R: R, H: H, data: tex };
    return head.tex;
  }

  /** The CPU path: neutral + sum_k w_k delta_k over the sparse morph entries only (position and normal). */
  function blendSparse(head, idxs, ws, n, pos, nrm) {
    var sp = head.sparse;
    if (!sp.f32) sp.f32 = { d: halfToFloat(sp.delta), n: halfToFloat(sp.ndelta) };
    var d = sp.f32.d, dn = sp.f32.n, index = sp.index;
    pos.set(head.positions);
    nrm.set(head.normals);
    for (var i = 0; i < n; i++) {
      var w = ws[i], k = idxs[i];
      for (var j = sp.start[k], e = sp.start[k + 1]; j < e; j++) {
        var v = 3 * index[j], q = 3 * j;
        pos[v] += w * d[q]; pos[v + 1] += w * d[q + 1]; pos[v + 2] += w * d[q + 2];
        nrm[v] += w * dn[q]; nrm[v + 1] += w * dn[q + 1]; nrm[v + 2] += w * dn[q + 2];
      }
    }
  }

  function registerHead(key, payload) {
    if (!heads[key]) heads[key] = typeof payload === "string" ? JSON.parse(payload) : payload;
    return heads[key];
  }
  function getHead(key) {
    var h = heads[key];
    if (h && !h.decoded) h = heads[key] = decodeHead(h); // decode lazily, once per page
    return h;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // small matrix helpers (column-major 4x4)
  function perspective(fovy, aspect, near, far) {
    var f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
    return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
  }
  function lookAt(eye, at, up) {
    var z = norm3(sub3(eye, at)), x = norm3(cross3(up, z)), y = cross3(z, x);
    return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0,
      -dot3(x, eye), -dot3(y, eye), -dot3(z, eye), 1];
  }
  function mul4(a, b) {
    var o = new Array(16);
    for (var c = 0; c < 4; c++) {
      for (var r = 0; r < 4; r++) {
        var s = 0;
        for (var k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
        o[c * 4 + r] = s;
      }
    }
    return o;
  }
  function sub3(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
  function dot3(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
  function cross3(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
  function norm3(a) { var l = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / l, a[1] / l, a[2] / l]; }

  function vertexNormals(pos, idx, out) {
    out.fill(0);
    for (var f = 0; f < idx.length; f += 3) {
      var a = 3 * idx[f], b = 3 * idx[f + 1], c = 3 * idx[f + 2];
      var ux = pos[b] - pos[a], uy = pos[b + 1] - pos[a + 1], uz = pos[b + 2] - pos[a + 2];
      var vx = pos[c] - pos[a], vy = pos[c + 1] - pos[a + 1], vz = pos[c + 2] - pos[a + 2];
      var nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx; // area-weighted
      out[a] += nx; out[a + 1] += ny; out[a + 2] += nz;
      out[b] += nx; out[b + 1] += ny; out[b + 2] += nz;
      out[c] += nx; out[c + 1] += ny; out[c + 2] += nz;
    }
    for (var i = 0; i < out.length; i += 3) {
      var l = Math.hypot(out[i], out[i + 1], out[i + 2]) || 1;
      out[i] /= l; out[i + 1] /= l; out[i + 2] /= l;
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------------
  // shaders
  var VS = [
    "#version 300 es",
    "precision highp float; precision highp int; precision highp sampler2D;",
    "layout(location=0) in vec3 a_pos; layout(location=1) in vec3 a_nrm; layout(location=2) in vec4 a_col;",
    "uniform sampler2D u_deltas;   // RGBA16F: block 2k = position deltas of morph k, 2k+1 = normal deltas",
    "uniform int u_width; uniform int u_rows; uniform int u_n;",
    "uniform int u_idx[" + MAX_MORPHS + "]; uniform float u_w[" + MAX_MORPHS + "];",
    "uniform mat4 u_mvp; uniform mat4 u_view; uniform float u_point;",
    "out vec3 v_nrm; out vec3 v_col;",
    "void main() {",
    "  vec3 p = a_pos; vec3 n = a_nrm;",
    "  ivec2 base = ivec2(gl_VertexID % u_width, gl_VertexID / u_width);",
    "  for (int i = 0; i < " + MAX_MORPHS + "; ++i) {",
    "    if (i >= u_n) break;",
    "    ivec2 c = base + ivec2(0, 2 * u_idx[i] * u_rows);",
    "    p += u_w[i] * texelFetch(u_deltas, c, 0).xyz;",
    "    n += u_w[i] * texelFetch(u_deltas, c + ivec2(0, u_rows), 0).xyz;",
    "  }",
    "  v_nrm = mat3(u_view) * n;       // view space: the lights follow the camera",
    "  v_col = pow(a_col.rgb, vec3(2.2));",
    "  gl_Position = u_mvp * vec4(p, 1.0);",
    "  gl_PointSize = u_point;",
    "}",
  ].join("\n");
  var FS = [
    "#version 300 es",
    "precision highp float;",
    "in vec3 v_nrm; in vec3 v_col; uniform float u_unlit; out vec4 o_col;",
    "void main() {",
    "  vec3 n = normalize(v_nrm);",
    "  if (!gl_FrontFacing) n = -n;",
    "  vec3 key = normalize(vec3(-0.45, 0.55, 0.75)), fill = normalize(vec3(0.6, 0.1, 0.6));",
    "  vec3 h = normalize(key + vec3(0.0, 0.0, 1.0));",
    "  float d = max(dot(n, key), 0.0) * 0.75 + max(dot(n, fill), 0.0) * 0.3 + 0.26;",
    "  float rim = pow(1.0 - max(n.z, 0.0), 3.0) * 0.15;",
    "  float spec = pow(max(dot(n, h), 0.0), 40.0) * 0.12;",
    "  vec3 c = v_col * d + vec3(spec + rim);",
    "  c = mix(c, v_col, u_unlit);",
    "  o_col = vec4(pow(clamp(c, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);",
    "}",
  ].join("\n");

  function compile(gl, vs, fs) {
    function sh(type, src) {
      var s = gl.createShader(type);
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error("shader: " + gl.getShaderInfoLog(s));
      return s;
    }
    var p = gl.createProgram();
    gl.attachShader(p, sh(gl.VERTEX_SHADER, vs));
    gl.attachShader(p, sh(gl.FRAGMENT_SHADER, fs));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error("program: " + gl.getProgramInfoLog(p));
    var u = {};
    ["u_deltas", "u_width", "u_rows", "u_n", "u_idx", "u_w", "u_mvp", "u_view", "u_point", "u_unlit"]
      .forEach(function (n) { u[n] = gl.getUniformLocation(p, n); });
    return { program: p, u: u };
  }

  // ---------------------------------------------------------------------------------------------------------------
  // the player
  function Player(el) {
    this.el = el;
    this.mountedAt = performance.now();
    this.id = el.id || (el.id = "dt-player-" + nextId++);
    this.canvas = el.querySelector("canvas");
    this.audio = el.querySelector("audio");
    this.frame = 0;
    this.frames = [];
    this.ready = false;
    this.drawCount = 0;
    this.alwaysDraw = false;
    this.firstFrameAt = null;
    this.error = null;
    this._dirty = true;
    this.animText = el.getAttribute("data-dt-anim");
    var anim = JSON.parse(this.animText);
    this.anim = anim;
    var headKey = el.getAttribute("data-dt-head-key") || anim.head;
    var inline = el.getAttribute("data-dt-head");
    if (inline) registerHead(headKey || "inline", inline);
    var needsHead = anim.anims.some(function (a) { return a.kind === "blendshape"; });
    this.head = needsHead ? getHead(headKey || "inline") : null;
    if (needsHead && !this.head) {
      throw new Error("the head mesh '" + headKey + "' was not loaded: add preview.player_head() to the page head");
    }
    this._decodeAnims();
    this._initGL();
    this._initUI();
    this.resetView();
    var self = this;
    this._raf = requestAnimationFrame(function loop() {
      if (!self.canvas.isConnected) { self.dispose(); return; }
      self._raf = requestAnimationFrame(loop); // scheduled first: one failed frame must not stop the player
      try {
        self.tick();
      } catch (err) {
        var msg = String((err && err.message) || err);
        if (msg !== self.lastError && window.console) console.error("DiffusionTalker player:", err);
        self.lastError = msg;
      }
    });
  }

  Player.prototype._decodeAnims = function () {
    var meshes = (this.anim.meshes || []).map(function (m) {
      var tpl = f32(m.template);
      return { V: m.V, template: tpl, indices: m.faces ? ints(m.faces, m.faces_dtype) : null, view: defaultView(tpl) };
    });
    this.meshes = meshes;
    this.tiles = this.anim.anims.map(function (a, i) {
      var t = { kind: a.kind, fps: a.fps, T: a.frames, label: a.label || "", index: i };
      if (a.kind === "blendshape") {
        t.weights = f32(a.weights); // (T, M)
        t.M = a.channels;
      } else {
        t.mesh = meshes[a.mesh];
        t.offsets = u16(a.offsets); // (T, V, 3) float16
        t.pos = new Float32Array(3 * t.mesh.V);
        t.nrm = new Float32Array(3 * t.mesh.V);
        t.shownFrame = -1;
      }
      return t;
    });
    this.duration = this.tiles.reduce(function (d, t) { return Math.max(d, t.T / t.fps); }, 0);
  };

  var SOFTWARE = null;
  /** True when WebGL runs on a CPU rasteriser (SwiftShader, llvmpipe): we then skip MSAA, the costliest part. */
  function softwareGL() {
    if (SOFTWARE !== null) return SOFTWARE;
    SOFTWARE = false;
    try {
      var probe = document.createElement("canvas").getContext("webgl2");
      var info = probe && probe.getExtension("WEBGL_debug_renderer_info");
      var name = info ? String(probe.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
      SOFTWARE = /swiftshader|llvmpipe|softpipe|software/i.test(name);
      var lose = probe && probe.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext();
    } catch (e) { /* keep the default */ }
    return SOFTWARE;
  }

  Player.prototype._initGL = function () {
    // morph blending: "gpu" (texture + vertex shader) on real GPUs; "cpu" (sparse, in JS) on software GL, where
    // the vertex shader runs on the CPU anyway and the sparse loop is ~4x cheaper; data-dt-blend overrides
    this.blend = this.el.getAttribute("data-dt-blend") || (softwareGL() ? "cpu" : "gpu");
    this.antialias = this.el.getAttribute("data-dt-antialias") !== null
      ? this.el.getAttribute("data-dt-antialias") === "1" : !softwareGL();
    var gl = this.canvas.getContext("webgl2", { antialias: this.antialias, alpha: false, premultipliedAlpha: false });
    if (!gl) throw new Error("WebGL2 is not available in this browser; use the video download instead");
    this.gl = gl;
    this.prog = compile(gl, VS, FS);
    gl.enable(gl.DEPTH_TEST);
    var self = this;
    function buffer(target, data, usage) {
      var b = gl.createBuffer();
      gl.bindBuffer(target, b);
      gl.bufferData(target, data, usage || gl.STATIC_DRAW);
      return b;
    }
    this._buffers = [];
    this._vaos = [];
    this._textures = [];
    var maxTex = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    var tex = gl.createTexture();
    this._textures.push(tex);
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    var h = this.head;
    if (h && this.blend === "gpu") {
      var dt = deltaTexture(h);
      if (dt.H > maxTex) throw new Error("the head has too many vertices for this GPU's textures");
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA16F, dt.W, dt.H, 0, gl.RGBA, gl.HALF_FLOAT, dt.data);
    } else {
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA16F, 1, 1, 0, gl.RGBA, gl.HALF_FLOAT, new Uint16Array(4));
    }
    if (h) {
      var bc = buffer(gl.ARRAY_BUFFER, h.colors), bi = buffer(gl.ELEMENT_ARRAY_BUFFER, h.indices);
      this._buffers.push(bc, bi);
      var shared = null;
      this.headGL = { count: h.indices.length, type: h.indices instanceof Uint16Array ? gl.UNSIGNED_SHORT
        : gl.UNSIGNED_INT };
      this.tiles.forEach(function (t) {
        if (t.kind !== "blendshape") return;
        if (self.blend === "gpu" && shared) { t.vao = shared; return; } // the GPU path shares one static mesh
        var usage = self.blend === "gpu" ? gl.STATIC_DRAW : gl.DYNAMIC_DRAW;
        var vao = gl.createVertexArray();
        gl.bindVertexArray(vao);
        t.bpos = buffer(gl.ARRAY_BUFFER, h.positions, usage);
        gl.enableVertexAttribArray(0);
        gl.vertexAttribPointer(0, 3, gl.FLOAT, false, 0, 0);
        t.bnrm = buffer(gl.ARRAY_BUFFER, h.normals, usage);
        gl.enableVertexAttribArray(1);
        gl.vertexAttribPointer(1, 3, gl.FLOAT, false, 0, 0);
        gl.bindBuffer(gl.ARRAY_BUFFER, bc);
        gl.enableVertexAttribArray(2);
        gl.vertexAttribPointer(2, 4, gl.UNSIGNED_BYTE, true, 0, 0);
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, bi);
        gl.bindVertexArray(null);
        self._buffers.push(t.bpos, t.bnrm);
        self._vaos.push(vao);
        t.vao = shared = vao;
        if (self.blend === "cpu") {
          t.pos = new Float32Array(h.positions.length);
          t.nrm = new Float32Array(h.normals.length);
          t.shownFrame = -1;
        }
      });
    }
    this.tiles.forEach(function (t) {
      if (t.kind !== "vertex") return;
      var m = t.mesh;
      var vao = gl.createVertexArray();
      gl.bindVertexArray(vao);
      t.bpos = buffer(gl.ARRAY_BUFFER, m.template, gl.DYNAMIC_DRAW);
      gl.enableVertexAttribArray(0);
      gl.vertexAttribPointer(0, 3, gl.FLOAT, false, 0, 0);
      t.bnrm = buffer(gl.ARRAY_BUFFER, t.nrm, gl.DYNAMIC_DRAW);
      gl.enableVertexAttribArray(1);
      gl.vertexAttribPointer(1, 3, gl.FLOAT, false, 0, 0);
      gl.disableVertexAttribArray(2); // constant colour, set per draw
      if (m.indices) {
        if (!m.ibuf) m.ibuf = buffer(gl.ELEMENT_ARRAY_BUFFER, m.indices);
        else gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, m.ibuf);
      }
      gl.bindVertexArray(null);
      self._buffers.push(t.bpos, t.bnrm);
      if (m.ibuf) self._buffers.push(m.ibuf);
      self._vaos.push(vao);
      t.vao = vao;
    });
    this._idx = new Int32Array(MAX_MORPHS);
    this._w = new Float32Array(MAX_MORPHS);
    this.canvas.addEventListener("webglcontextlost", function (e) {
      e.preventDefault();
      self.error = "the WebGL context was lost";
      self._status(self.error + "; reload the page");
    });
  };

  Player.prototype._initUI = function () {
    var self = this, c = this.canvas, n = this.tiles.length;
    this.cols = this.anim.cols || Math.ceil(Math.sqrt(n));
    this.rows = Math.ceil(n / this.cols);
    var stage = this.el.querySelector(".dt-stage") || c.parentNode;
    Array.prototype.forEach.call(stage.querySelectorAll(".dt-label,.dt-reset,.dt-status"), function (old) {
      old.parentNode.removeChild(old);
    });
    this.tiles.forEach(function (t, i) {
      if (!t.label) return;
      var d = document.createElement("div");
      d.className = "dt-label";
      d.textContent = t.label;
      d.style.left = ((i % self.cols) * 100) / self.cols + "%";
      d.style.top = (Math.floor(i / self.cols) * 100) / self.rows + "%";
      stage.appendChild(d);
    });
    var reset = document.createElement("button");
    reset.type = "button";
    reset.className = "dt-reset";
    reset.title = "reset view (or double-click the picture)";
    reset.textContent = "\u21ba";
    reset.addEventListener("click", function () { self.resetView(); });
    stage.appendChild(reset);
    this.statusEl = document.createElement("div");
    this.statusEl.className = "dt-status";
    stage.appendChild(this.statusEl);

    var drag = null;
    c.addEventListener("pointerdown", function (e) {
      drag = { x: e.clientX, y: e.clientY };
      if (c.setPointerCapture) c.setPointerCapture(e.pointerId);
    });
    c.addEventListener("pointermove", function (e) {
      if (!drag) return;
      self.yaw -= (e.clientX - drag.x) * 0.01;
      self.pitch = Math.max(-1.4, Math.min(1.4, self.pitch + (e.clientY - drag.y) * 0.01));
      drag = { x: e.clientX, y: e.clientY };
      self._dirty = true;
    });
    function end() { drag = null; }
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("wheel", function (e) {
      e.preventDefault();
      self.zoom = Math.max(0.25, Math.min(4, self.zoom * Math.exp(e.deltaY * 0.001)));
      self._dirty = true;
    }, { passive: false });
    c.addEventListener("dblclick", function () { self.resetView(); });
    if (!this.audio || !this.audio.getAttribute("src")) {
      // no audio: a free-running looping clock
      var t0 = performance.now();
      this.clock = function () { return ((performance.now() - t0) / 1000) % Math.max(self.duration, 1e-3); };
    } else {
      var a = this.audio;
      this.clock = function () { return a.currentTime; };
    }
  };

  Player.prototype._status = function (msg) {
    if (this.statusEl) {
      this.statusEl.textContent = msg || "";
      this.statusEl.style.display = msg ? "block" : "none";
    }
  };

  Player.prototype.resetView = function () {
    this.yaw = 0;
    this.pitch = 0.05;
    this.zoom = 1;
    this._dirty = true;
  };

  Player.prototype._camera = function (view, aspect) {
    var fov = (24 * Math.PI) / 180;
    var dist = ((view.extent * 0.62) / Math.tan(fov / 2) + view.depth / 2) * this.zoom;
    var tg = view.target, cp = Math.cos(this.pitch);
    var eye = [tg[0] + dist * Math.sin(this.yaw) * cp, tg[1] + dist * Math.sin(this.pitch),
      tg[2] + dist * Math.cos(this.yaw) * cp];
    var v = lookAt(eye, tg, [0, 1, 0]);
    var p = perspective(fov, aspect, dist * 0.05, dist * 4 + view.depth);
    return { view: v, mvp: mul4(p, v) };
  };

  Player.prototype._tileRect = function (i) {
    var W = this.canvas.width, H = this.canvas.height, tw = W / this.cols, th = H / this.rows;
    var col = i % this.cols, row = Math.floor(i / this.cols);
    return { x: Math.round(col * tw), y: Math.round(H - (row + 1) * th), w: Math.round(tw), h: Math.round(th) };
  };

  /** Screen position (CSS pixels, from the canvas' top-left) of a model-space point in tile i, at the current view. */
  Player.prototype.project = function (i, p) {
    var t = this.tiles[i], view = t.kind === "vertex" ? t.mesh.view : this.head.view, r = this._tileRect(i);
    var m = this._camera(view, r.w / r.h).mvp;
    var x = m[0] * p[0] + m[4] * p[1] + m[8] * p[2] + m[12], y = m[1] * p[0] + m[5] * p[1] + m[9] * p[2] + m[13];
    var w = m[3] * p[0] + m[7] * p[1] + m[11] * p[2] + m[15];
    var sx = r.x + ((x / w + 1) / 2) * r.w, sy = this.canvas.height - (r.y + ((y / w + 1) / 2) * r.h);
    var k = this.canvas.clientWidth / this.canvas.width || 1;
    return [sx * k, sy * k];
  };

  Player.prototype.tick = function () {
    var t = this.clock(), changed = false;
    if (this.benchmark) t = ((this.drawCount + 1) / this.tiles[0].fps) % this.duration; // a new frame every draw
    for (var i = 0; i < this.tiles.length; i++) {
      var tile = this.tiles[i];
      var f = Math.max(0, Math.min(tile.T - 1, Math.round(t * tile.fps)));
      if (this.frames[i] !== f) { this.frames[i] = f; changed = true; }
    }
    this.time = t;
    this.frame = this.frames[0];
    if (changed || this._dirty || this.alwaysDraw) this.draw();
  };

  Player.prototype.draw = function () {
    var gl = this.gl, u = this.prog.u, self = this;
    if (!gl || this.error) return;
    gl.useProgram(this.prog.program);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this._textures[0]);
    gl.uniform1i(u.u_deltas, 0);
    if (this.head && this.blend === "gpu") {
      gl.uniform1i(u.u_width, this.head.tex.W);
      gl.uniform1i(u.u_rows, this.head.tex.R);
    }
    gl.enable(gl.SCISSOR_TEST);
    var cells = this.cols * this.rows;
    for (var e = this.tiles.length; e < cells; e++) { // empty grid cells
      var er = this._tileRect(e);
      gl.scissor(er.x, er.y, er.w, er.h);
      gl.clearColor(0.955, 0.955, 0.965, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
    }
    this.tiles.forEach(function (tile, i) {
      var r = self._tileRect(i), f = self.frames[i] || 0;
      gl.viewport(r.x, r.y, r.w, r.h);
      gl.scissor(r.x, r.y, r.w, r.h);
      var shade = i % 2 ? 0.93 : 0.955;
      gl.clearColor(shade, shade, shade + 0.01, 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      var view = tile.kind === "vertex" ? tile.mesh.view : self.head.view;
      var cam = self._camera(view, r.w / r.h);
      gl.uniformMatrix4fv(u.u_mvp, false, cam.mvp);
      gl.uniformMatrix4fv(u.u_view, false, cam.view);
      if (tile.kind === "blendshape") {
        var M = tile.M, w = tile.weights, n = 0;
        for (var k = 0; k < M && n < MAX_MORPHS; k++) {
          var wk = w[f * M + k];
          if (wk > 1e-4 || wk < -1e-4) { self._idx[n] = k; self._w[n] = wk; n++; }
        }
        if (self.blend === "gpu") {
          gl.uniform1i(u.u_n, n);
          gl.uniform1iv(u.u_idx, self._idx);
          gl.uniform1fv(u.u_w, self._w);
        } else {
          gl.uniform1i(u.u_n, 0);
          if (tile.shownFrame !== f) {
            blendSparse(self.head, self._idx, self._w, n, tile.pos, tile.nrm);
            gl.bindBuffer(gl.ARRAY_BUFFER, tile.bpos);
            gl.bufferSubData(gl.ARRAY_BUFFER, 0, tile.pos);
            gl.bindBuffer(gl.ARRAY_BUFFER, tile.bnrm);
            gl.bufferSubData(gl.ARRAY_BUFFER, 0, tile.nrm);
            tile.shownFrame = f;
          }
        }
        gl.uniform1f(u.u_point, 1);
        gl.uniform1f(u.u_unlit, 0);
        gl.enable(gl.CULL_FACE); // closed, outward-wound head: hides the inside-out mouth cavity from outside
        gl.bindVertexArray(tile.vao);
        gl.drawElements(gl.TRIANGLES, self.headGL.count, self.headGL.type, 0);
      } else {
        self._updateVertexTile(tile, f);
        gl.disable(gl.CULL_FACE); // winding of arbitrary templates is unknown: draw both sides
        gl.uniform1i(u.u_n, 0);
        gl.uniform1f(u.u_point, 2);
        gl.uniform1f(u.u_unlit, tile.mesh.indices ? 0 : 1);
        gl.bindVertexArray(tile.vao);
        gl.vertexAttrib4f(2, 0.86, 0.72, 0.64, 1);
        if (tile.mesh.indices) {
          gl.drawElements(gl.TRIANGLES, tile.mesh.indices.length,
            tile.mesh.indices instanceof Uint16Array ? gl.UNSIGNED_SHORT : gl.UNSIGNED_INT, 0);
        } else {
          gl.drawArrays(gl.POINTS, 0, tile.mesh.V);
        }
      }
    });
    gl.bindVertexArray(null);
    gl.disable(gl.SCISSOR_TEST);
    this._dirty = false;
    this.drawCount++;
    this.canvas.setAttribute("data-frame", String(this.frame));
    if (!this.ready) {
      gl.finish();
      this.ready = true;
      this.firstFrameAt = performance.now();
      this.canvas.setAttribute("data-first-frame-ms", this.firstFrameAt.toFixed(1));
      this.canvas.setAttribute("data-ready", "1");
      this.el.setAttribute("data-ready", "1");
    }
  };

  Player.prototype._updateVertexTile = function (tile, f) {
    if (tile.shownFrame === f) return;
    var m = tile.mesh, n = 3 * m.V, t = halfTable(), off = tile.offsets, base = f * n, pos = tile.pos;
    for (var i = 0; i < n; i++) pos[i] = m.template[i] + t[off[base + i]];
    var gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, tile.bpos);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, pos);
    if (m.indices) {
      vertexNormals(pos, m.indices, tile.nrm);
      gl.bindBuffer(gl.ARRAY_BUFFER, tile.bnrm);
      gl.bufferSubData(gl.ARRAY_BUFFER, 0, tile.nrm);
    }
    tile.shownFrame = f;
  };

  Player.prototype.dispose = function () {
    if (this._raf) cancelAnimationFrame(this._raf);
    this._raf = null;
    var gl = this.gl;
    if (gl) {
      this._buffers.forEach(function (b) { gl.deleteBuffer(b); });
      this._vaos.forEach(function (v) { gl.deleteVertexArray(v); });
      this._textures.forEach(function (t) { gl.deleteTexture(t); });
      gl.deleteProgram(this.prog.program);
      var lose = gl.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext(); // browsers cap live contexts; free ours now
      this.gl = null;
    }
    if (players[this.id] === this) delete players[this.id];
  };

  // ---------------------------------------------------------------------------------------------------------------
  // mounting
  var CSS = [
    ".dt-player{display:inline-block;max-width:100%;font:13px/1.3 system-ui,sans-serif}",
    ".dt-stage{position:relative;line-height:0}",
    ".dt-canvas{display:block;max-width:100%;height:auto;touch-action:none;cursor:grab;border-radius:6px}",
    ".dt-canvas:active{cursor:grabbing}",
    ".dt-player .dt-label{position:absolute;margin:6px 8px;padding:2px 6px;border-radius:4px;line-height:1.3;",
    "background:rgba(255,255,255,.78);color:#222;font-size:12px;pointer-events:none}",
    ".dt-player .dt-reset{position:absolute;right:6px;top:6px;width:26px;height:26px;border:0;border-radius:13px;",
    "background:rgba(255,255,255,.8);color:#222;cursor:pointer;font-size:15px;line-height:26px;padding:0}",
    ".dt-status{display:none;position:absolute;left:0;right:0;top:40%;text-align:center;line-height:1.4;",
    "color:#a00;padding:8px}",
    ".dt-audio{display:block;width:100%;margin-top:6px}",
  ].join("");
  function injectCSS() {
    if (document.getElementById("dt-player-style")) return;
    var s = document.createElement("style");
    s.id = "dt-player-style";
    s.textContent = CSS;
    (document.head || document.documentElement).appendChild(s);
  }

  /** A new canvas in place of a used one: a disposed (lost) WebGL context cannot be created again on it. */
  function freshCanvas(el) {
    var c = el.querySelector("canvas");
    if (!c) return;
    var n = document.createElement("canvas");
    n.className = c.className;
    n.width = c.width;
    n.height = c.height;
    c.parentNode.replaceChild(n, c);
  }

  /** Mount a player on el; remount when its payload changed (gradio patches the DOM in place on updates). */
  function mount(el) {
    var cur = el.__dtPlayer, text = el.getAttribute("data-dt-anim");
    if (cur && cur.gl && cur.animText === text && el.contains(cur.canvas)) return cur;
    if (el.__dtMounted) {
      if (cur) cur.dispose();
      el.__dtPlayer = null;
      freshCanvas(el);
      el.removeAttribute("data-error");
      el.removeAttribute("data-ready");
      Array.prototype.forEach.call(el.querySelectorAll(".dt-status"), function (m) { m.parentNode.removeChild(m); });
    }
    el.__dtMounted = true;
    injectCSS();
    var old = el.id && players[el.id];
    if (old && old.el !== el) old.dispose();
    try {
      var p = new Player(el);
      el.__dtPlayer = p;
      players[p.id] = p;
      return p;
    } catch (err) {
      el.setAttribute("data-error", String(err.message || err));
      var st = el.querySelector(".dt-stage") || el, msg = document.createElement("div");
      msg.className = "dt-status";
      msg.style.display = "block";
      msg.textContent = "Preview unavailable: " + (err.message || err);
      st.appendChild(msg);
      if (window.console) console.error("DiffusionTalker player:", err);
      return null;
    }
  }

  /** Mount every player element under root (idempotent). */
  function scan(root) {
    root = root || document;
    var list = [];
    if (root.matches && root.matches("[data-dt-player]")) list.push(root);
    if (root.querySelectorAll) list = list.concat(Array.prototype.slice.call(root.querySelectorAll("[data-dt-player]")));
    return list.map(mount);
  }

  var observer = null;
  function observe() {
    if (observer || !document.body) return;
    observer = new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var t = records[i].target;
        if (records[i].type === "attributes" && t.hasAttribute && t.hasAttribute("data-dt-player")) mount(t);
        var added = records[i].addedNodes;
        for (var j = 0; j < added.length; j++) if (added[j].nodeType === 1) scan(added[j]);
      }
    });
    observer.observe(document.body, { childList: true, subtree: true, attributes: true,
      attributeFilter: ["data-dt-anim"] });
  }

  window.DTPlayer = { version: VERSION, scan: scan, mount: mount, registerHead: registerHead, heads: heads,
    players: players };
  function start() { observe(); scan(document); }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
